"""Cold start and load behaviour of ws_bridge: connection burst on a just-started instance (scenario 14),
heartbeats (17), file descriptor limit (28), slow consumer and bounded queues (29)."""

from __future__ import annotations

import asyncio
import json
import struct
import time

import httpx
import pytest
import websockets

from tests.ws_bridge.conftest import WsEnv
from tests.ws_bridge.helpers import RawClient, connect, new_run, protocols, recv, seqs, subscribe, until


def test_scenario_14_connection_burst_on_a_just_started_bridge(start_bridge, ws_env: WsEnv) -> None:
    """Scenario 14: 200 clients connect while the bridge is still starting: each is accepted and served, or
    closed with the retryable 1013 and then served on retry; none hangs."""
    token, _ = ws_env.user("burst")
    bridge = start_bridge(wait="", MAX_CONNECTIONS_PER_USER="500")

    async def one() -> tuple[str, str]:
        first = None
        for _ in range(600):  # the port opens a moment after spawn
            try:
                ws, _ = await connect(bridge.url, token, open_timeout=20)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            except websockets.ConnectionClosed as exc:
                first = first or f"closed {exc.rcvd.code if exc.rcvd else '?'}"
                await asyncio.sleep(0.2)
                continue
            await ws.send(json.dumps({"type": "ping"}))
            frame = await recv(ws, 20)
            await ws.close()
            return first or frame["type"], frame["type"]
        return first or "never connected", "gave up"

    async def run() -> list[tuple[str, str]]:
        return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(200))), 120)

    outcomes = asyncio.run(run())
    firsts = [f for f, _ in outcomes]
    print(f"first attempts: {firsts.count('pong')} served, {firsts.count('closed 1013')} told to retry (1013)")
    assert set(firsts) <= {"pong", "closed 1013"}, set(firsts)
    assert all(final == "pong" for _, final in outcomes)


def test_scenario_17_heartbeats_drop_dead_peers_and_keep_live_ones(start_bridge, ws_env: WsEnv) -> None:
    """Scenario 17: with a 1 s heartbeat, a peer that never answers pings is closed (1011) and cleaned up
    within a few intervals; a live client that answers them stays connected."""
    bridge = start_bridge(HEARTBEAT_INTERVAL_S="1")
    token, _ = ws_env.user("heartbeat")

    async def live() -> None:
        ws, _ = await connect(bridge.url, token)
        await asyncio.sleep(5)  # five intervals; the client library answers each ping
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv(ws))["type"] == "pong"
        await ws.close()

    async def run() -> None:
        live_task = asyncio.ensure_future(live())
        dead = await asyncio.to_thread(RawClient, bridge.port, token)
        opcodes, close_code = [], None
        started = time.monotonic()
        try:
            while True:
                opcode, payload = await asyncio.to_thread(dead.frame)
                opcodes.append(opcode)
                if opcode == 0x8:
                    (close_code,) = struct.unpack("!H", payload[:2])
        except (TimeoutError, EOFError, ConnectionResetError):
            pass
        dead.close()
        print(f"dead peer closed after {time.monotonic() - started:.1f}s; frames {opcodes}")
        assert opcodes[0] == 0x1 and 0x9 in opcodes, opcodes  # connection_established, then pings
        assert close_code == 1011
        await live_task

    asyncio.run(run())
    bridge.wait(lambda b: b["connections"] == 0, what="the dead connection removed")


def process_fd_limits(pid: int) -> tuple[int, int]:
    """(soft, hard) RLIMIT_NOFILE of a running process, from /proc/<pid>/limits."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError(f"no 'Max open files' line in /proc/{pid}/limits")


def test_scenario_28_fd_limit_raised_and_capacity_enforced(start_bridge, ws_env: WsEnv) -> None:
    """Scenario 28: started with a soft limit of 64 and a hard one of 256, the bridge raises the soft limit to
    256, reports it in /health/startup with the connection capacity it derives, and beyond that capacity
    refuses new sockets with 1013 "at capacity" instead of failing on EMFILE."""
    bridge = start_bridge(wrapper=["prlimit", "--nofile=64:256"], MAX_CONNECTIONS_PER_USER="1000")
    limit = bridge.startup()["fd_limit"]
    print(f"fd limit: {limit}")
    # The limit the process really has, read from the kernel, not from what the bridge reports about itself.
    assert process_fd_limits(bridge.process.pid) == (256, 256), "the soft limit was not raised to the hard one"
    assert (limit["soft_before"], limit["soft"], limit["hard"]) == (64, 256, 256)
    capacity = limit["max_connections"]
    assert 100 < capacity < 256 - 32
    token, _ = ws_env.user("fds")

    async def run() -> None:
        open_ws = []
        for _ in range(capacity):
            ws, _ = await connect(bridge.url, token)
            open_ws.append(ws)
        for _ in range(3):
            ws = await websockets.connect(bridge.url, subprotocols=protocols(token), origin="http://localhost:1")
            with pytest.raises(websockets.ConnectionClosed):
                await recv(ws)
            assert ws.close_code == 1013 and "at capacity" in ws.close_reason
        await open_ws[0].send(json.dumps({"type": "ping"}))
        assert (await recv(open_ws[0]))["type"] == "pong"
        for ws in open_ws:
            await ws.close()

    asyncio.run(run())
    assert httpx.get(f"{bridge.http}/health/live").status_code == 200
    bridge.wait(lambda b: b["connections"] == 0, what="all sockets closed")


def test_default_fd_limit_is_reported(start_bridge) -> None:
    """Scenario 28: where soft already equals hard, nothing to raise; still reported."""
    bridge = start_bridge()
    limit = bridge.startup()["fd_limit"]
    assert limit["soft"] == limit["hard"] or limit["hard"] == -1
    assert limit["max_connections"] > 0


def test_scenario_29_slow_consumer_is_closed_1013_others_unaffected(start_bridge, ws_env: WsEnv) -> None:
    """Scenario 29: a client that stops reading while its run streams 64 KiB events: once the socket buffers
    and its bounded send queue (10 frames) are full it is closed with 1013 and its queue is dropped. Only it:
    a client of another user on the same instance gets all of its events in order, and a second socket of the
    same user on the same thread, which reads, gets every one of the flood's events in order and stays open.
    The slow client resumes with after_seq and gets the rest, nothing twice. The slow client is a bare socket
    with a 4 KiB receive buffer (a client library would keep reading into its own memory)."""
    # CLOSE_TIMEOUT_S: the slow client reads its close only after the test has seen it, which may take a while
    # on a loaded machine; the socket must not be aborted before (the never-reading peer test covers that).
    bridge = start_bridge(SEND_QUEUE_SIZE="10", CLOSE_TIMEOUT_S="45")
    slow_token, slow_id = ws_env.user("slow")
    fast_token, fast_id = ws_env.user("fast")
    slow_thread, fast_thread = ws_env.thread(slow_id), ws_env.thread(fast_id)
    slow_run, fast_run = new_run(), new_run()
    source = ws_env.source
    rss_before = bridge.rss_mb()

    def flood(start: int, count: int) -> None:
        events = [source.event(slow_thread, slow_run, s, pad=65_536) for s in range(start, start + count)]
        source.log_many(slow_id, events)
        futures = [source.publish(slow_id, e, wait=False) for e in events]
        for future in futures:
            future.result(30)

    slow = RawClient(bridge.port, slow_token, rcvbuf=4096)
    assert slow.json()["type"] == "connection_established"
    slow.send_text(json.dumps({"type": "subscribe", "thread_id": slow_thread}))
    assert slow.json()["type"] == "subscribed"

    async def run() -> None:
        fast, _ = await connect(bridge.url, fast_token)
        await subscribe(fast, fast_thread)
        fast_task = asyncio.ensure_future(until(fast, lambda f: f.get("seq") == 30, timeout=120))
        sibling, _ = await connect(bridge.url, slow_token, max_size=None)
        await subscribe(sibling, slow_thread)
        sibling_seqs: list[int] = []

        async def read_sibling() -> None:
            async for text in sibling:
                sibling_seqs.append(json.loads(text)["seq"])

        sibling_task = asyncio.ensure_future(read_sibling())
        sent, fast_seq = 0, 0
        while bridge.startup()["stats"]["slow_consumers_closed"] == 0:
            assert sent < 1000, f"the slow consumer was never closed: {bridge.startup()['stats']}"
            await asyncio.to_thread(flood, sent + 1, 25)
            sent += 25
            if fast_seq < 30:
                fast_seq += 1
                await asyncio.to_thread(source.emit, fast_id, fast_thread, fast_run, fast_seq)
        print(
            f"slow consumer closed after {sent} events of 64 KiB; bridge RSS {rss_before:.0f} -> "
            f"{bridge.rss_mb():.0f} MiB"
        )
        got, code, reason = await asyncio.to_thread(slow.drain)
        slow.close()
        assert code == 1013 and "too slow" in reason, (code, reason)
        delivered = seqs(got)
        assert delivered == list(range(1, len(delivered) + 1)), "what was delivered has no gap"
        for seq in range(fast_seq + 1, 31):
            await asyncio.to_thread(source.emit, fast_id, fast_thread, fast_run, seq)
        assert seqs(await fast_task) == list(range(1, 31))
        await fast.close()
        deadline = time.monotonic() + 60
        while len(sibling_seqs) < sent and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert sibling_seqs == list(range(1, sent + 1)), "the same user's reading socket lost or reordered events"
        assert not sibling_task.done(), "the same user's reading socket was closed"
        sibling_task.cancel()
        await sibling.close()
        again, _ = await connect(bridge.url, slow_token, max_size=None)
        resumed = await subscribe(again, slow_thread, run_id=slow_run, after_seq=len(delivered))
        assert delivered + seqs(resumed) == list(range(1, sent + 1))
        await again.close()

    asyncio.run(run())
    assert httpx.get(f"{bridge.http}/health/live").status_code == 200
    assert bridge.startup()["queued_frames"] == 0


def test_scenario_29_a_peer_that_never_reads_is_cut_off(start_bridge, ws_env: WsEnv) -> None:
    """Scenario 29: a peer that stops reading for good (its TCP window stays shut, so not even the close frame
    can be written): once its send queue is full it is closed with 1013, and when that close cannot be
    delivered within CLOSE_TIMEOUT_S the socket is aborted, so the connection, its slot and its buffers are
    released instead of being held until the instance dies."""
    bridge = start_bridge(SEND_QUEUE_SIZE="10", CLOSE_TIMEOUT_S="1")
    token, user_id = ws_env.user("stuck")
    thread, run_id = ws_env.thread(user_id), new_run()
    source = ws_env.source
    stuck = RawClient(bridge.port, token, rcvbuf=4096)
    assert stuck.json()["type"] == "connection_established"
    stuck.send_text(json.dumps({"type": "subscribe", "thread_id": thread}))
    assert stuck.json()["type"] == "subscribed"
    sent = 0
    while bridge.startup()["stats"]["slow_consumers_closed"] == 0:
        assert sent < 1000, f"the stuck peer was never closed: {bridge.startup()['stats']}"
        events = [source.event(thread, run_id, s, pad=65_536) for s in range(sent + 1, sent + 26)]
        source.log_many(user_id, events)
        for future in [source.publish(user_id, e, wait=False) for e in events]:
            future.result(30)
        sent += 25
    body = bridge.wait(lambda b: b["connections"] == 0, timeout_s=20, what="the stuck connection released")
    assert body["queued_frames"] == 0 and body["stats"]["aborted"] == 1, body
    stuck.close()
    assert httpx.get(f"{bridge.http}/health/live").status_code == 200
