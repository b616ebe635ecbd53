"""Fan-out and resume: events reach only their owner's subscribed sockets, on any instance; a client that
reconnects (to another instance, during a restart, in a storm) gets every event of its run exactly once, in
order. Events are produced as the agent worker does: logged in Firestore, then published with ordering key."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time

import pytest
import websockets
from google.api_core.exceptions import NotFound

from tests.ws_bridge.conftest import WsEnv, subscriptions
from tests.ws_bridge.helpers import EventSource, connect, new_run, recv, seqs, subscribe, until


def test_events_reach_only_their_owner_across_two_instances(start_bridge, ws_env: WsEnv) -> None:
    """Two instances, two users each connected to both: every event reaches exactly its owner's subscribed
    sockets, on both instances, and nobody else's."""
    a, b = start_bridge(), start_bridge()
    alice, alice_id = ws_env.user("alice")
    bob, bob_id = ws_env.user("bob")
    thread_a, thread_b = ws_env.thread(alice_id), ws_env.thread(bob_id)
    run_a, run_b = new_run(), new_run()

    async def run() -> None:
        sockets = {}
        for name, token, thread in (("alice", alice, thread_a), ("bob", bob, thread_b)):
            for bridge in (a, b):
                ws, _ = await connect(bridge.url, token)
                assert (await subscribe(ws, thread))[-1]["type"] == "subscribed"
                sockets[(name, bridge.port)] = ws
        idle, _ = await connect(a.url, alice)  # Alice's, but not subscribed to the thread
        for seq in (1, 2, 3):
            await asyncio.to_thread(ws_env.source.emit, alice_id, thread_a, run_a, seq)
            await asyncio.to_thread(ws_env.source.emit, bob_id, thread_b, run_b, seq)
        for (name, _port), ws in sockets.items():
            got = await until(ws, lambda f: f.get("seq") == 3)
            expected_run = run_a if name == "alice" else run_b
            assert [(f["run_id"], f["seq"]) for f in got] == [(expected_run, s) for s in (1, 2, 3)]
        for ws in [*sockets.values(), idle]:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.5)
            await ws.close()

    asyncio.run(run())
    for bridge in (a, b):
        stats = bridge.startup()["stats"]
        assert stats["delivered"] == 6, stats


def test_scenario_15_reconnect_to_the_other_instance_mid_run(start_bridge, ws_env: WsEnv) -> None:
    """Scenario 15: a client disconnected mid-run reconnects to the other instance with after_seq and gets
    the rest of the run exactly once, in order, including events emitted while it was away and during the
    replay."""
    a, b = start_bridge(), start_bridge()
    token, user_id = ws_env.user("resume")
    thread = ws_env.thread(user_id)
    run_id = new_run()

    async def run() -> None:
        ws, _ = await connect(a.url, token)
        await subscribe(ws, thread)
        for seq in (1, 2, 3):
            await asyncio.to_thread(ws_env.source.emit, user_id, thread, run_id, seq)
        got = await until(ws, lambda f: f.get("seq") == 3)
        await ws.close()
        for seq in (4, 5):
            await asyncio.to_thread(ws_env.source.emit, user_id, thread, run_id, seq)
        ws2, _ = await connect(b.url, token)
        resumed = await subscribe(ws2, thread, run_id=run_id, after_seq=seqs(got)[-1])
        assert resumed[-1] == {"type": "subscribed", "thread_id": thread, "replayed": 2}
        await asyncio.to_thread(ws_env.source.emit, user_id, thread, run_id, 6, "agent_completed")
        resumed += await until(ws2, lambda f: f.get("type") == "agent_completed")
        assert seqs(got) + seqs(resumed) == [1, 2, 3, 4, 5, 6]
        await ws2.close()

    asyncio.run(run())


def test_replay_merges_with_live_events_without_gap_or_duplicate(start_bridge, ws_env: WsEnv) -> None:
    """Live events keep arriving while a long replay (paged, 50 per read) is sent: the client gets 1..N
    exactly once, in order."""
    bridge = start_bridge(REPLAY_PAGE_SIZE="50")
    token, user_id = ws_env.user("merge")
    thread = ws_env.thread(user_id)
    run_id = new_run()
    source = ws_env.source
    logged = [source.event(thread, run_id, seq) for seq in range(1, 301)]
    source.log_many(user_id, logged)
    live_total = 340
    stop = threading.Event()

    def produce() -> None:
        for seq in range(301, live_total + 1):
            source.emit(user_id, thread, run_id, seq, "agent_completed" if seq == live_total else "partial_result")
            if stop.is_set():
                return

    async def run() -> list[int]:
        ws, _ = await connect(bridge.url, token)
        producer = threading.Thread(target=produce)
        producer.start()
        try:
            await ws.send(json.dumps({"type": "subscribe", "thread_id": thread, "run_id": run_id, "after_seq": 0}))
            frames = await until(ws, lambda f: f.get("type") == "agent_completed", timeout=60)
        finally:
            stop.set()
            await asyncio.to_thread(producer.join)
        await ws.close()
        acks = [f for f in frames if f["type"] == "subscribed"]
        assert len(acks) == 1 and acks[0]["replayed"] >= 300
        return seqs(frames)

    assert asyncio.run(run()) == list(range(1, live_total + 1))


def test_a_gap_in_the_live_stream_is_filled_from_the_log(start_bridge, ws_env: WsEnv) -> None:
    """An event whose publish was lost (logged, never published): the next live event reveals the gap, and
    the bridge reads the missing one from the log before sending on."""
    bridge = start_bridge()
    token, user_id = ws_env.user("gap")
    thread = ws_env.thread(user_id)
    run_id = new_run()
    source = ws_env.source

    async def run() -> None:
        ws, _ = await connect(bridge.url, token)
        await subscribe(ws, thread)
        await asyncio.to_thread(source.emit, user_id, thread, run_id, 1)
        assert (await recv(ws))["seq"] == 1
        await asyncio.to_thread(source.log, user_id, source.event(thread, run_id, 2))  # never published
        await asyncio.to_thread(source.emit, user_id, thread, run_id, 3)
        await asyncio.to_thread(source.emit, user_id, thread, run_id, 4)
        got = await until(ws, lambda f: f.get("seq") == 4)
        assert seqs(got) == [2, 3, 4]
        await ws.close()

    asyncio.run(run())
    assert bridge.startup()["stats"]["gaps_repaired"] == 1


def test_scenario_18_sigterm_during_a_run(start_bridge, ws_env: WsEnv) -> None:
    """Scenario 18: SIGTERM mid-run: the instance stops accepting, closes its sockets with 1012, deletes its
    subscription and exits within Cloud Run's 10 s; an event published during the shutdown reaches the client
    after it reconnects to another instance, with nothing lost and nothing twice."""
    a, b = start_bridge(), start_bridge()
    token, user_id = ws_env.user("sigterm")
    thread = ws_env.thread(user_id)
    run_id = new_run()
    subscription_a = a.startup()["subscription"]
    assert subscription_a in subscriptions(ws_env.project)

    async def run() -> float:
        ws, _ = await connect(a.url, token)
        await subscribe(ws, thread)
        await asyncio.to_thread(ws_env.source.emit, user_id, thread, run_id, 1)
        got = await until(ws, lambda f: f.get("seq") == 1)
        a.process.signal(signal.SIGTERM)
        signalled = time.monotonic()
        await asyncio.to_thread(ws_env.source.emit, user_id, thread, run_id, 2)
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                got.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        assert ws.close_code == 1012, (ws.close_code, ws.close_reason)
        ws2, _ = await connect(b.url, token)
        resumed = await subscribe(ws2, thread, run_id=run_id, after_seq=seqs(got)[-1])
        await asyncio.to_thread(ws_env.source.emit, user_id, thread, run_id, 3, "agent_completed")
        resumed += await until(ws2, lambda f: f.get("type") == "agent_completed")
        assert seqs(got) + seqs(resumed) == [1, 2, 3]
        await ws2.close()
        return signalled

    signalled = asyncio.run(run())
    code = a.process.proc.wait(timeout=10)
    print(f"SIGTERM -> exit {time.monotonic() - signalled:.2f}s, exit code {code}")
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    with pytest.raises(NotFound):
        subscriber.get_subscription(request={"subscription": subscription_a})
    subscriber.close()


def test_scenario_15_reconnect_storm_after_a_restart(start_bridge, ws_env: WsEnv) -> None:
    """Scenario 15: 40 clients (4 users x 10 sockets) follow 4 runs on instance A; A is restarted (SIGTERM)
    mid-run and all 40 reconnect at once to B with after_seq while the runs keep producing. Every client ends
    with its run's 1..N exactly once, in order."""
    a, b = start_bridge(), start_bridge()
    users = [ws_env.user(f"storm{i}") for i in range(4)]
    runs = [(token, user_id, ws_env.thread(user_id), new_run()) for token, user_id in users]
    total = 30
    source = ws_env.source
    halfway = threading.Event()

    def produce() -> None:
        for seq in range(1, total + 1):
            for _, user_id, thread, run_id in runs:
                kind = "agent_completed" if seq == total else "partial_result"
                event = source.event(thread, run_id, seq, kind)
                source.log(user_id, event)
                source.publish(user_id, event, wait=False)
            if seq == total // 3:
                halfway.set()
            time.sleep(0.03)

    async def client(token: str, thread: str, run_id: str, ready: list[int]) -> tuple[list[int], int]:
        url, received, reconnects = a.url, [], 0
        after: int | None = None
        while True:
            ws, _ = await connect(url, token, open_timeout=20)
            extra = {"run_id": run_id, "after_seq": after} if after is not None else {}
            try:
                got = await subscribe(ws, thread, **extra)
                assert got[-1]["type"] == "subscribed", got
                ready.append(1)
                received += seqs(got)
                while True:
                    frame = await recv(ws, 30)
                    if "seq" in frame:
                        received.append(frame["seq"])
                        if frame["type"] == "agent_completed":
                            await ws.close()
                            return received, reconnects
            except websockets.ConnectionClosed:
                assert ws.close_code in (1012, 1006), ws.close_code
                url, reconnects = b.url, reconnects + 1
                after = received[-1] if received else 0

    async def run() -> list[tuple[list[int], int]]:
        ready: list[int] = []
        clients = [client(token, thread, run_id, ready) for token, _, thread, run_id in runs for _ in range(10)]
        tasks = [asyncio.ensure_future(c) for c in clients]
        while len(ready) < 40:  # everyone connected and subscribed to A
            await asyncio.sleep(0.05)
        producer = threading.Thread(target=produce)
        producer.start()
        await asyncio.to_thread(halfway.wait, 30)
        a.process.signal(signal.SIGTERM)
        results = await asyncio.wait_for(asyncio.gather(*tasks), 90)
        await asyncio.to_thread(producer.join)
        return results

    results = asyncio.run(run())
    assert all(received == list(range(1, total + 1)) for received, _ in results), [r for r, _ in results]
    assert sum(n for _, n in results) == 40, "every client was moved by the restart"
    assert a.process.proc.wait(10) is not None
    print(f"40 clients resumed on B; B stats: {b.startup()['stats']}")


def test_event_source_matches_the_worker_layout(ws_env: WsEnv) -> None:
    """The test producer writes what functions/agent/eventlog.py writes (so the bridge is tested against the
    real layout): read back through the worker's own reader."""
    from functions.agent.eventlog import EventLog

    source: EventSource = ws_env.source
    run_id = new_run()
    source.emit("user-1", "thread-1", run_id, 1)
    source.emit("user-1", "thread-1", run_id, 2, "agent_completed")
    import os

    previous = {k: os.environ.get(k) for k in ("GOOGLE_CLOUD_PROJECT", "FIRESTORE_COLLECTION_PREFIX")}
    os.environ.update({"GOOGLE_CLOUD_PROJECT": ws_env.project, "FIRESTORE_COLLECTION_PREFIX": source.prefix})
    from shared import firestore

    firestore.reset_client()
    try:
        log = EventLog(ws_env.project, 7)
        assert [e.seq for e in log.events(run_id)] == [1, 2]
        state = log.run_state(run_id)
        assert state and state["user_id"] == "user-1" and state["thread_id"] == "thread-1"
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        firestore.reset_client()


def test_scenario_29_live_events_during_a_slow_replay_stay_bounded_and_nothing_is_lost(
    start_bridge, ws_env: WsEnv
) -> None:
    """Scenario 29: a client resumes run 1 of a thread (300 logged events of 64 KiB) and does not read for a
    while (its send queue holds 10 frames, so the replay waits for it), while run 2 of the same thread streams
    30 live events. Its replay buffer holds only 10 live events: when it overflows, the buffered events are
    dropped and run 2 is read again from the event log after the replay, instead of the client being closed.
    It is not a slow consumer of live events, so it stays connected and gets run 1's 1..300 and run 2's 1..30,
    each exactly once, in order."""
    bridge = start_bridge(REPLAY_PAGE_SIZE="50", REPLAY_BUFFER_SIZE="10", SEND_QUEUE_SIZE="10")
    token, user_id = ws_env.user("overflow")
    thread = ws_env.thread(user_id)
    run_1, run_2 = new_run(), new_run()
    source = ws_env.source
    # 300 x 64 KiB is more than the loopback socket buffers hold, so the replay cannot finish unread.
    for first in range(1, 301, 25):  # 25 per write: a Firestore request is limited to 4 MiB
        source.log_many(user_id, [source.event(thread, run_1, s, pad=65_536) for s in range(first, first + 25)])

    async def run() -> list[dict]:
        ws, _ = await connect(bridge.url, token, max_queue=1, max_size=None)
        await ws.send(json.dumps({"type": "subscribe", "thread_id": thread, "run_id": run_1, "after_seq": 0}))
        for seq in range(1, 31):
            kind = "agent_completed" if seq == 30 else "partial_result"
            await asyncio.to_thread(source.emit, user_id, thread, run_2, seq, kind)
        body = await asyncio.to_thread(
            bridge.wait, lambda b: b["stats"]["received"] >= 30, 30, "run 2's live events received"
        )
        assert body["stats"]["replay_overflows"] > 0, f"the replay buffer did not overflow: {body['stats']}"
        frames: list[dict] = []
        while {"agent_completed", "subscribed"} - {f["type"] for f in frames}:
            frames.append(await recv(ws, 30))
        with pytest.raises(TimeoutError):  # and nothing after that
            await asyncio.wait_for(ws.recv(), 1)
        await ws.close()
        return frames

    frames = asyncio.run(run())
    assert seqs(frames, run_1) == list(range(1, 301))
    assert seqs(frames, run_2) == list(range(1, 31))
    assert [f["type"] for f in frames if "seq" not in f] == ["subscribed"]
    stats = bridge.startup()["stats"]
    print(f"stats: {stats}")
    assert stats["slow_consumers_closed"] == 0 and stats["aborted"] == 0
