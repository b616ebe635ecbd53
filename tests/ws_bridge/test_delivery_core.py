"""The delivery rules of a subscription (functions/ws_bridge/delivery.py), in process and without I/O: a tiny
shell below plays the event log and the live stream, including the races the subprocess tests in
test_fanout.py provoke with real processes (a live event while the replay reads the log, a gap in the live
stream, a replay whose buffer overflows: scenario 29)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.ws_bridge.delivery import (
    GAP_UNFILLED,
    REPLAY_UNAVAILABLE,
    SLOW_CONSUMER,
    Delivery,
    Offer,
    ReadLog,
    Send,
    Subscription,
)
from shared.models.events import AgentEvent
from shared.models.ws import CLOSE_TRY_AGAIN

THREAD = "thread-1"
TS = datetime(2026, 1, 1, tzinfo=UTC)  # fixed, so the same event serializes to the same frame


def ev(run_id: str, seq: int) -> AgentEvent:
    return AgentEvent(type="agent_thinking", run_id=run_id, thread_id=THREAD, seq=seq, ts=TS)


def live(run_id: str, seq: int) -> Delivery:
    event = ev(run_id, seq)
    return Delivery(event, event.to_frame())


def key(frame: str) -> tuple[str, int] | str:
    body = json.loads(frame)
    return (body["run_id"], body["seq"]) if "seq" in body else body["type"]


class Shell:
    """What replay.py does, synchronously: carries out each step, records what is sent and read. ``during``
    is called after each event read from the log (where live events slip in during a real replay)."""

    def __init__(self, log: dict[str, int], during: Callable[[ReadLog, int], None] | None = None) -> None:
        self.log = log  # run id -> last seq in the log (the log holds 1..N)
        self.during = during
        self.sent: list[tuple[str, int] | str] = []
        self.raw: list[str] = []  # the frames themselves
        self.reads: list[ReadLog] = []

    def read(self, step: ReadLog) -> list[AgentEvent]:
        runs = [step.run_id] if step.run_id else list(self.log)
        return [ev(r, s) for r in runs for s in range(step.after_seq + 1, self.log.get(r, 0) + 1)]

    def drive(self, sub: Subscription) -> None:
        while (step := sub.next_step()) is not None:
            if isinstance(step, Send):
                self.sent += [key(f) for f in step.frames]
                self.raw += step.frames
                continue
            self.reads.append(step)
            for event in self.read(step):
                frame = sub.from_log(event)
                if frame is not None:
                    self.sent.append(key(frame))
                    self.raw.append(frame)
                if self.during:
                    self.during(step, event.seq)

    def offer(self, sub: Subscription, delivery: Delivery) -> Offer:
        outcome = sub.live(delivery)
        if outcome is Offer.SENT:
            self.sent.append(key(delivery.frame))
        return outcome


def test_live_events_go_out_in_seq_order_once_each() -> None:
    sub = Subscription.start(THREAD, 10, ack={"type": "subscribed"})
    shell = Shell({})
    shell.drive(sub)
    assert not sub.replaying
    assert [shell.offer(sub, live("r", s)) for s in (1, 2, 2, 1, 3)] == [
        Offer.SENT,
        Offer.SENT,
        Offer.SKIPPED,
        Offer.SKIPPED,
        Offer.SENT,
    ]
    assert shell.sent == ["subscribed", ("r", 1), ("r", 2), ("r", 3)]


def test_the_first_event_seen_of_a_run_is_sent_whatever_its_seq() -> None:
    sub = Subscription.start(THREAD, 10)
    Shell({}).drive(sub)
    assert sub.live(live("late", 7)) is Offer.SENT  # joined mid-run without replay: no gap to fill
    assert sub.live(live("late", 8)) is Offer.SENT


def test_subscribe_without_replay_reads_nothing_and_acks_with_zero() -> None:
    sub = Subscription.start(THREAD, 10, ack={"type": "subscribed", "thread_id": THREAD})
    assert sub.next_step() == Send(('{"type":"subscribed","thread_id":"thread-1","replayed":0}',))
    assert sub.next_step() is None and not sub.replaying


def test_replay_reads_after_seq_then_acks_with_the_count() -> None:
    sub = Subscription.start(THREAD, 10, "r", 2, ack={"type": "subscribed"})
    shell = Shell({"r": 5})
    shell.drive(sub)
    assert shell.reads == [ReadLog("r", 2)]
    assert shell.sent == [("r", 3), ("r", 4), ("r", 5), "subscribed"]
    assert json.loads(shell.raw[-1]) == {"type": "subscribed", "replayed": 3}


def test_what_the_client_already_has_is_not_sent_again() -> None:
    """Resuming run "r" after seq 3: neither the log nor a live event repeats 1..3."""
    sub = Subscription.start(THREAD, 10, "r", 3, ack={"type": "subscribed"})
    assert sub.live(live("r", 3)) is Offer.BUFFERED  # published again (a retried worker) during the replay
    assert sub.from_log(ev("r", 2)) is None
    assert sub.from_log(ev("r", 4)) == ev("r", 4).to_frame()
    assert sub.from_log(ev("r", 4)) is None
    shell = Shell({"r": 4})
    shell.drive(sub)
    assert shell.sent == ["subscribed"]
    assert sub.replayed == 1


def test_replay_of_a_whole_thread_reads_every_run_from_the_start() -> None:
    sub = Subscription.start(THREAD, 10, after_seq=0, ack={"type": "subscribed"})
    shell = Shell({"a": 2, "b": 1})
    shell.drive(sub)
    assert shell.reads == [ReadLog(None, 0)]
    assert shell.sent == [("a", 1), ("a", 2), ("b", 1), "subscribed"]


def test_live_events_while_replaying_are_buffered_then_merged_without_duplicates() -> None:
    """The race of test_replay_merges_with_live_events_without_gap_or_duplicate: while the log is read,
    the worker appends 6..8 and publishes them; 6 was also read from the log, so the merge skips it."""
    sub = Subscription.start(THREAD, 10, "r", 0, ack={"type": "subscribed"})

    def during(step: ReadLog, seq: int) -> None:
        if seq == 3:
            shell.log["r"] = 6  # 6 lands in the log before it is published, as the worker does
            assert sub.live(live("r", 6)) is Offer.BUFFERED
            shell.log["r"] = 8
            assert sub.live(live("r", 7)) is Offer.BUFFERED
            assert sub.live(live("r", 8)) is Offer.BUFFERED

    shell = Shell({"r": 5}, during)
    shell.drive(sub)
    assert shell.sent == [*(("r", s) for s in range(1, 9)), "subscribed"]
    assert not sub.replaying and sub.buffer == []


def test_a_live_event_during_the_ack_is_merged_before_going_live() -> None:
    sub = Subscription.start(THREAD, 10, ack={"type": "subscribed"})
    assert isinstance(sub.next_step(), Send)  # the ack; its send awaits the queue, and meanwhile:
    assert sub.live(live("r", 1)) is Offer.BUFFERED
    assert sub.next_step() == Send((live("r", 1).frame,))
    assert sub.next_step() is None and not sub.replaying


def test_a_gap_in_the_live_stream_is_read_from_the_log_then_the_buffer_merged() -> None:
    """The race of test_a_gap_in_the_live_stream_is_filled_from_the_log: 3 and 4 never arrive live."""
    sub = Subscription.start(THREAD, 10)
    shell = Shell({"r": 5})
    shell.drive(sub)
    assert [shell.offer(sub, live("r", s)) for s in (1, 2)] == [Offer.SENT, Offer.SENT]
    assert shell.offer(sub, live("r", 5)) is Offer.GAP
    assert sub.replaying
    assert shell.offer(sub, live("r", 6)) is Offer.BUFFERED  # arrives while the range is read
    shell.log["r"] = 6
    shell.sent.clear()
    shell.drive(sub)
    assert shell.reads[-1] == ReadLog("r", 2)
    assert shell.sent == [("r", s) for s in range(3, 7)]  # from the log 3..6, then the buffer: 5, 6 skipped
    assert not sub.replaying and sub.buffer == []


def test_a_full_replay_buffer_defers_the_run_and_rereads_it_from_the_log() -> None:
    """The race of scenario 29's slow replay: more live events than the buffer holds arrive while the log
    is read; they are dropped and their run is read again from where they started, nothing lost."""
    sub = Subscription.start(THREAD, 3, "r", 0, ack={"type": "subscribed"})
    offers: list[Offer] = []

    def during(step: ReadLog, seq: int) -> None:
        if step == ReadLog("r", 0) and seq == 2:
            for s in range(3, 11):  # the log holds 1..2 when read; 3..10 are appended and published now
                shell.log["r"] = s
                offers.append(sub.live(live("r", s)))

    shell = Shell({"r": 2}, during)
    shell.drive(sub)
    assert offers == [Offer.BUFFERED] * 3 + [Offer.DEFERRED] * 5  # deferred run: later events dropped too
    assert shell.reads == [ReadLog("r", 0), ReadLog("r", 2)]  # re-read from the last seq sent
    assert shell.sent == [*(("r", s) for s in range(1, 11)), "subscribed"]
    assert sub.replayed == 10


def test_a_deferred_run_is_reread_after_the_last_seq_sent_not_the_lowest_dropped() -> None:
    """The buffer overflows early in the read, while the log already holds the events being dropped: the
    re-read starts after what the read went on to send, not again from the first dropped event."""
    sub = Subscription.start(THREAD, 2, "r", 0)

    def during(step: ReadLog, seq: int) -> None:
        if step == ReadLog("r", 0) and seq == 1:
            assert [sub.live(live("r", s)) for s in (2, 3, 4)] == [Offer.BUFFERED, Offer.BUFFERED, Offer.DEFERRED]

    shell = Shell({"r": 5}, during)
    shell.drive(sub)
    assert shell.reads == [ReadLog("r", 0), ReadLog("r", 5)]
    assert shell.sent == [("r", s) for s in range(1, 6)]


def test_a_deferred_run_never_sent_is_reread_from_its_lowest_dropped_seq() -> None:
    sub = Subscription.start(THREAD, 1, "r", 0)
    assert sub.next_step() == ReadLog("r", 0)  # reading "r"; meanwhile run "x" starts live
    assert sub.live(live("x", 4)) is Offer.BUFFERED
    assert sub.live(live("x", 5)) is Offer.DEFERRED
    assert sub.buffer == [] and sub.deferred == {"x": 4}
    assert sub.next_step() == ReadLog("x", 3)


def test_runs_deferred_during_a_reread_are_read_after_it() -> None:
    sub = Subscription.start(THREAD, 0, "r", 0)
    assert sub.next_step() == ReadLog("r", 0)
    assert sub.live(live("a", 1)) is Offer.DEFERRED
    assert sub.next_step() == ReadLog("a", 0)
    assert sub.live(live("a", 2)) is Offer.DEFERRED  # no room: deferred again, after the reread
    assert sub.deferred == {"a": 2}
    assert sub.from_log(ev("a", 1)) is not None
    assert sub.next_step() == ReadLog("a", 1)


def test_a_run_deferred_during_rereads_is_read_after_the_ones_already_taken() -> None:
    """Runs "x" and "y" are deferred together and taken for reading; while "x" is re-read, run "z" is deferred:
    "y" is still read before "z", none is lost."""
    sub = Subscription.start(THREAD, 0, "r", 0)  # no buffer: every live event while replaying is deferred
    assert sub.next_step() == ReadLog("r", 0)
    assert [sub.live(live(run, 1)) for run in ("x", "y")] == [Offer.DEFERRED] * 2
    assert sub.next_step() == ReadLog("x", 0)
    assert sub.live(live("z", 1)) is Offer.DEFERRED
    assert [sub.next_step() for _ in range(3)] == [ReadLog("y", 0), ReadLog("z", 0), None]


def test_a_failed_log_read_refuses_a_subscribe_but_closes_1013_on_a_gap() -> None:
    sub = Subscription.start(THREAD, 10, "r", 0)
    assert sub.next_step() == ReadLog("r", 0)
    assert sub.log_failed() == REPLAY_UNAVAILABLE
    assert REPLAY_UNAVAILABLE.error["code"] == "replay_unavailable"

    sub = Subscription.start(THREAD, 10)
    Shell({}).drive(sub)
    sub.live(live("r", 1))
    assert sub.live(live("r", 3)) is Offer.GAP
    assert sub.next_step() == ReadLog("r", 1)
    assert sub.log_failed() == GAP_UNFILLED
    assert GAP_UNFILLED.code == SLOW_CONSUMER.code == CLOSE_TRY_AGAIN == 1013


def test_closed_holds_nothing() -> None:
    sub = Subscription.start(THREAD, 1, "r", 0)
    sub.next_step()
    sub.live(live("r", 1))
    sub.live(live("x", 1))
    sub.next_step()  # takes the deferred runs for reading
    sub.live(live("y", 1))
    sub.closed()
    assert sub.buffer == [] and sub.deferred == {} and sub.next_step() is None


def test_the_hub_shell_turns_a_full_send_queue_into_overflow() -> None:
    """Connection.offer (hub.py) carries out SENT by enqueueing; a full queue is the slow consumer that
    Hub.route closes with SLOW_CONSUMER (1013)."""
    import asyncio

    from functions.ws_bridge.hub import Connection
    from functions.ws_bridge.limits import TokenBucket

    async def offers() -> None:  # the writer task needs a running loop; it does not run before the offers
        conn = Connection(None, "u", None, 0.0, 1, TokenBucket(60))
        sub = Subscription.start(THREAD, 10)
        Shell({}).drive(sub)
        conn.subscriptions[THREAD] = sub
        assert conn.offer(live("r", 1)) is Offer.SENT
        assert conn.offer(live("r", 2)) is Offer.OVERFLOW
        other = AgentEvent(type="agent_thinking", run_id="o", thread_id="not-subscribed", seq=1, ts=TS)
        assert conn.offer(Delivery(other, other.to_frame())) is Offer.SKIPPED
        conn.closed = True
        assert conn.offer(live("r", 3)) is Offer.SKIPPED
        conn.stop_tasks()

    asyncio.run(offers())


def test_the_send_queue_and_its_writer_exist_only_while_frames_wait() -> None:
    """Issue 18 (idle memory): the writer sends the frames in order and then ends, leaving neither a queue nor
    a task; a replay's put() waits for room instead of overflowing, and a close releases a waiting put."""
    import asyncio

    from functions.ws_bridge.hub import Connection

    async def scenario() -> None:
        sent: list[str] = []
        gate = asyncio.Event()

        async def send(message: dict[str, str]) -> None:
            await gate.wait()  # a client that does not read yet
            sent.append(message["text"])

        conn = Connection(send, "u", None, 0.0, 2, None)
        assert conn.pending is None and conn.writer is None  # accepted and idle: nothing
        assert conn.enqueue("a")
        await asyncio.sleep(0)  # the writer takes "a" and waits for the client
        assert conn.enqueue("b") and conn.enqueue("c")
        assert not conn.enqueue("live")  # full: a live event here is the slow consumer (1013)
        replay = asyncio.create_task(conn.put("d"))
        await asyncio.sleep(0.01)
        assert not replay.done() and conn.queued() == 2  # the replay waits for room
        gate.set()
        await asyncio.wait_for(replay, 5)
        for _ in range(100):
            if conn.writer is None:
                break
            await asyncio.sleep(0.01)
        assert sent == ["a", "b", "c", "d"]
        assert conn.pending is None and conn.writer is None and conn.room is None  # idle again: nothing held

        gate.clear()
        assert conn.enqueue("e")
        await asyncio.sleep(0)  # a new writer takes "e"
        assert conn.enqueue("f") and conn.enqueue("g")
        waiting = asyncio.create_task(conn.put("h"))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        conn.closed = True  # hub.close: what is queued is dropped, a waiting put returns
        conn.drop_pending()
        await asyncio.wait_for(waiting, 5)
        assert conn.queued() == 0
        conn.stop_tasks()

    asyncio.run(scenario())


def test_the_hub_counts_what_became_of_each_connection_and_event() -> None:
    """The counters of the startup health answer (docs/WEBSOCKET.md) start at zero, and each routed event
    counts once: delivered, deferred (replay_overflows), dropped for want of a connection, a gap repaired, a
    slow consumer closed, or none of these (not subscribed)."""
    import asyncio

    from functions.ws_bridge.hub import Connection, Hub

    async def scenario() -> None:
        sent: list[dict[str, Any]] = []
        repaired: list[tuple[Connection, Subscription]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def repair(conn: Connection, sub: Subscription) -> None:
            repaired.append((conn, sub))

        hub = Hub(10)
        hub.repair = repair
        assert vars(hub.stats) == dict.fromkeys(
            [
                "received",
                "delivered",
                "dropped_no_owner",
                "gaps_repaired",
                "replay_overflows",
                "slow_consumers_closed",
                "aborted",
                "expired_closed",
                "accepted",
                "refused",
            ],
            0,
        )
        hub.route("nobody", live("r", 1))  # no connection of that user here: dropped, its replay covers it

        subs: dict[str, Subscription] = {}
        conns: dict[str, Connection] = {}
        for user in ("u", "v"):
            conns[user] = Connection(send, user, None, 0.0, 1, None)
            subs[user] = Subscription.start(THREAD, 1)
            Shell({}).drive(subs[user])
            conns[user].subscriptions[THREAD] = subs[user]
            hub.add(conns[user])
        assert hub.total == 2

        hub.route("u", live("r", 1))  # delivered
        hub.route("u", live("r", 3))  # 2 is missing: a gap, repaired from the log
        hub.route("u", live("r", 4))  # the replay buffer (1) is full: deferred
        other = AgentEvent(type="agent_thinking", run_id="o", thread_id="not-subscribed", seq=1, ts=TS)
        hub.route("u", Delivery(other, other.to_frame()))  # not subscribed: counted as received only
        hub.route("v", live("r", 1))  # delivered: the send queue (1) is now full
        hub.route("v", live("r", 2))  # overflow: a slow consumer, closed
        for _ in range(100):
            if conns["v"].closed and repaired:
                break
            await asyncio.sleep(0.01)
        assert conns["v"].closed and not conns["u"].closed
        assert repaired == [(conns["u"], subs["u"])]
        hub.remove(conns["v"])
        hub.remove(conns["v"])  # removed once only
        assert hub.total == 1 and hub.count("v") == 0 and hub.count("u") == 1
        assert hub.wants("u") and not hub.wants("v")  # events for "v" are no longer parsed here
        assert vars(hub.stats) == {
            "received": 7,
            "delivered": 2,
            "dropped_no_owner": 1,
            "gaps_repaired": 1,
            "replay_overflows": 1,
            "slow_consumers_closed": 1,
            "aborted": 0,
            "expired_closed": 0,
            "accepted": 2,
            "refused": 0,
        }
        for conn in conns.values():
            conn.stop_tasks()

    asyncio.run(scenario())


def test_an_error_frame_carries_only_what_is_given_and_closes_only_a_full_queue() -> None:
    """send_error: ``client_message_id`` and ``retry_after_s`` appear only when given (docs/WEBSOCKET.md); an
    error frame that fits in the send queue leaves the connection open, one that does not is the slow consumer
    (1013)."""
    import asyncio

    from functions.ws_bridge.hub import Connection, send_error

    async def scenario() -> None:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        conn = Connection(send, "u", None, 0.0, 2, None)
        send_error(conn, "rate_limited", "at most 30 frames per minute")
        send_error(conn, "concurrent_requests", "busy", client_message_id="m-1", retry_after_s=3)
        for _ in range(100):
            if conn.writer is None:
                break
            await asyncio.sleep(0.01)
        assert not conn.closed
        assert [json.loads(m["text"]) for m in sent] == [
            {"type": "error", "code": "rate_limited", "message": "at most 30 frames per minute"},
            {
                "type": "error",
                "code": "concurrent_requests",
                "message": "busy",
                "client_message_id": "m-1",
                "retry_after_s": 3,
            },
        ]

        sent.clear()
        assert conn.enqueue("a") and conn.enqueue("b")  # the queue (2) is full
        send_error(conn, "rate_limited", "does not fit")
        for _ in range(100):
            if conn.closed and sent and sent[-1]["type"] == "websocket.close":
                break
            await asyncio.sleep(0.01)
        assert conn.closed
        assert sent[-1] == {"type": "websocket.close", "code": SLOW_CONSUMER.code, "reason": SLOW_CONSUMER.reason}
        assert all("does not fit" not in str(m.get("text")) for m in sent)
        conn.stop_tasks()

    asyncio.run(scenario())


def test_the_fd_limit_is_raised_to_the_hard_one_and_leaves_a_reserve(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenario 28: the soft limit goes up to the hard one (1_048_576, Linux's default nr_open, when the hard
    one is unlimited); a tenth of it, at least 32, stays free for the database pool and the clients; what is
    left after the descriptors already open is the number of connections, never below 0, at most the
    configured maximum. A refused setrlimit keeps the soft limit."""
    import resource

    from functions.ws_bridge import limits

    inf = resource.RLIM_INFINITY
    state: dict[str, Any] = {}

    def setrlimit(which: int, value: tuple[int, int]) -> None:
        assert which == resource.RLIMIT_NOFILE
        state["set"] = value
        if state["refuse"] is not None:
            raise state["refuse"]("not allowed")

    def fd_limit(
        soft: int, hard: int, in_use: int, configured: int | None = None, refuse: type[Exception] | None = None
    ) -> tuple[Any, Any]:
        state.clear()
        state["refuse"] = refuse
        monkeypatch.setattr(limits.resource, "getrlimit", lambda which: (soft, hard))
        monkeypatch.setattr(limits.resource, "setrlimit", setrlimit)
        monkeypatch.setattr(limits, "open_fds", lambda: in_use)
        got = limits.raise_fd_limit(configured)
        return state.get("set"), got.as_dict()

    assert fd_limit(1024, 4096, 100) == (
        (4096, 4096),
        {"soft_before": 1024, "soft": 4096, "hard": 4096, "open_at_start": 100, "max_connections": 4096 - 100 - 409},
    )
    assert fd_limit(1024, inf, 100) == (
        (1_048_576, inf),
        {"soft_before": 1024, "soft": 1_048_576, "hard": inf, "open_at_start": 100, "max_connections": 943_619},
    )
    assert fd_limit(inf, inf, 100)[0] == (1_048_576, inf)
    assert fd_limit(4096, 4096, 100)[0] is None  # already at the hard limit: nothing to raise
    assert fd_limit(1024, 4096, 100, refuse=ValueError)[1] == {  # what CPython raises for EPERM and EINVAL
        "soft_before": 1024,
        "soft": 1024,
        "hard": 4096,
        "open_at_start": 100,
        "max_connections": 1024 - 100 - 102,
    }
    assert fd_limit(1024, 4096, 100, refuse=OSError)[1]["soft"] == 1024  # any other errno
    assert fd_limit(330, 330, 100)[1]["max_connections"] == 330 - 100 - 33
    assert fd_limit(200, 200, 100)[1]["max_connections"] == 200 - 100 - 32  # a tenth (20) is below 32
    assert fd_limit(120, 120, 100)[1]["max_connections"] == 0  # 120 - 100 - 32 < 0
    assert fd_limit(1024, 4096, 100, configured=50)[1]["max_connections"] == 50
    assert fd_limit(1024, 4096, 100, configured=5000)[1]["max_connections"] == 3587


def test_a_run_replayed_from_its_start_is_reread_from_seq_1_when_deferred() -> None:
    """Subscribe with ``run_id`` and no ``after_seq``: run "r" is read from its start. Its first events, published
    while the (still empty) log was read, overflow the buffer: the reread starts again after seq 0."""
    sub = Subscription.start(THREAD, 1, "r", ack={"type": "subscribed"})
    assert sub.next_step() == ReadLog("r", 0)  # the log holds nothing of "r" yet
    assert sub.live(live("r", 1)) is Offer.BUFFERED
    assert sub.live(live("r", 2)) is Offer.DEFERRED
    shell = Shell({"r": 2})
    shell.drive(sub)
    assert shell.reads == [ReadLog("r", 0)]
    assert shell.sent == [("r", 1), ("r", 2), "subscribed"]


def test_every_agent_event_message_is_acked_and_only_a_wanted_one_is_routed() -> None:
    """fanout.py: a message for a user connected here is parsed and handed on with its data as the frame; one
    for nobody here is not parsed; a malformed one is counted and dropped. Every one is acked (a client
    that connects later replays from the event log), so none is redelivered after the ack deadline."""
    from functions.ws_bridge.fanout import EventSubscription

    class Message:
        def __init__(self, user_id: str | None, data: bytes) -> None:
            self.attributes = {"user_id": user_id} if user_id is not None else {}
            self.data = data
            self.acked = 0

        def ack(self) -> None:
            self.acked += 1

    routed: list[tuple[str, Delivery]] = []
    subscription = EventSubscription("p", 60, lambda user_id: user_id == "u", lambda u, d: routed.append((u, d)))
    frame = ev("r", 1).to_frame()
    messages = [
        Message("u", frame.encode()),
        Message("other", b"not even json"),  # for nobody here: not parsed, not counted as malformed
        Message(None, frame.encode()),  # no user: nobody's
        Message("u", b'{"type": "agent_thinking"}'),  # malformed: counted, dropped
        Message("u", b"\xff"),  # not UTF-8
    ]
    for message in messages:
        subscription._callback(message)
    assert [m.acked for m in messages] == [1, 1, 1, 1, 1]
    assert [(u, d.event, d.frame) for u, d in routed] == [("u", ev("r", 1), frame)]
    assert subscription.malformed == 2


def test_stopping_deletes_the_subscription_even_when_the_stream_or_the_delete_fails() -> None:
    """fanout.py on shutdown: the stream is cancelled, the instance's subscription deleted and the client closed,
    even when the stream does not end in time or the delete fails (its expiration TTL removes it then)."""
    from functions.ws_bridge.fanout import EventSubscription

    calls: list[Any] = []

    class Stream:
        def cancel(self) -> None:
            calls.append("cancel")

        def result(self, timeout: float) -> None:
            raise TimeoutError  # the stream did not end in time

    class Subscriber:
        def __init__(self, delete_fails: bool) -> None:
            self.delete_fails = delete_fails

        def delete_subscription(self, request: dict[str, str], timeout: float) -> None:
            calls.append(("delete", request))
            if self.delete_fails:
                raise RuntimeError("pubsub unavailable")

        def close(self) -> None:
            calls.append("close")

    EventSubscription("p", 60, lambda u: True, lambda u, d: None).stop()  # never started: nothing to do
    assert calls == []
    for delete_fails in (False, True):
        calls.clear()
        subscription = EventSubscription("p", 60, lambda u: True, lambda u, d: None)
        subscription._subscriber, subscription._future = Subscriber(delete_fails), Stream()
        subscription.stop()
        assert calls == ["cancel", ("delete", {"subscription": subscription.name}), "close"]


def test_a_client_gets_its_frames_per_minute_in_a_burst_then_at_that_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """limits.TokenBucket (MAX_FRAMES_PER_MINUTE) on a fake clock: 30 per minute is a burst of 30, then one
    frame every 2 seconds; an idle client gets its burst back, never more."""
    from types import SimpleNamespace

    from functions.ws_bridge import limits

    now = [100.0]
    monkeypatch.setattr(limits, "time", SimpleNamespace(monotonic=lambda: now[0]))
    bucket = limits.TokenBucket(30)
    assert [bucket.take() for _ in range(31)] == [True] * 30 + [False]
    now[0] = 101.96875  # 2 * 63/64 s later (exact in binary): not yet a whole frame
    assert not bucket.take()
    now[0] = 102.0  # 2 s after the burst: exactly one frame
    assert bucket.take()
    assert not bucket.take()
    now[0] = 1000.0  # idle for minutes: the burst again, capped at 30
    assert [bucket.take() for _ in range(31)] == [True] * 30 + [False]


def test_only_a_log_that_lacks_a_range_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    """A replay that reads consecutive seqs logs nothing; one whose log lacks a range (2 then 4) still sends
    what it has, with one warning naming the run and both seqs."""
    sub = Subscription.start(THREAD, 10, "r", 0)
    with caplog.at_level("WARNING"):
        assert [key(f) for f in (sub.from_log(ev("r", 1)), sub.from_log(ev("r", 2))) if f] == [("r", 1), ("r", 2)]
        assert caplog.records == []
        assert sub.from_log(ev("r", 4)) == ev("r", 4).to_frame()
    assert [(r.getMessage(), {k: vars(r)[k] for k in ("run_id", "after", "seq")}) for r in caplog.records] == [
        ("event log has a gap", {"run_id": "r", "after": 2, "seq": 4})
    ]


def test_a_peer_that_does_not_read_its_close_frame_is_aborted_and_counted() -> None:
    """hub.close: the close frame of a peer that reads is sent and nothing is aborted; a peer that does not read
    even the close frame within close_timeout_s has its socket aborted, once, and the hub counts it when it is
    removed (the ``aborted`` counter of the startup health answer). A peer already gone is simply closed. What
    the connection's tasks, its queue and its subscriptions held is released at once."""
    import asyncio

    from functions.ws_bridge.hub import Connection, Hub, close

    class Transport:
        def __init__(self) -> None:
            self.aborts = 0

        def abort(self) -> None:
            self.aborts += 1

    async def scenario() -> None:
        never = asyncio.Event()
        sent: list[dict[str, Any]] = []

        async def stuck(message: dict[str, Any]) -> None:
            await never.wait()  # its TCP window stays shut

        async def reads(message: dict[str, Any]) -> None:
            sent.append(message)

        async def gone(message: dict[str, Any]) -> None:
            raise RuntimeError("the peer is gone")

        hub = Hub(10)
        silent = Connection(stuck, "u", None, 0.0, 4, None, close_timeout_s=0.01, transport=Transport())
        reader = Connection(reads, "v", None, 0.0, 4, None, close_timeout_s=5.0, transport=Transport())
        hub.add(silent)
        hub.add(reader)
        replaying = Subscription.start(THREAD, 1, "r", 0)  # its replay holds live events when the close comes
        assert replaying.next_step() == ReadLog("r", 0)
        offers = [replaying.live(live(run, 1)) for run in ("a", "b", "c")]
        assert offers == [Offer.BUFFERED, Offer.DEFERRED, Offer.BUFFERED]  # "a" and "b" deferred, "c" buffered
        silent.subscriptions[THREAD] = replaying
        other = silent.spawn(never.wait())  # e.g. its replay, waiting on the log
        assert silent.enqueue("x") and silent.enqueue("y")
        await asyncio.sleep(0)  # the writer takes "x" and waits on the peer; "y" waits in the queue
        closing = silent.spawn(close(silent, SLOW_CONSUMER.code, SLOW_CONSUMER.reason))  # as Hub.route does
        await asyncio.wait_for(closing, 5)  # not cancelled by itself
        for _ in range(100):
            if other.done():
                break
            await asyncio.sleep(0.01)
        assert other.cancelled() and silent.pending is None  # its tasks stopped, its queue dropped
        assert replaying.buffer == [] and replaying.deferred == {}  # held nothing more once closed
        await close(silent, SLOW_CONSUMER.code, SLOW_CONSUMER.reason)  # closes once
        assert silent.closed and silent.aborted and silent.transport.aborts == 1
        await close(reader, 4001, "access token expired")
        assert sent == [{"type": "websocket.close", "code": 4001, "reason": "access token expired"}]
        assert reader.closed and not reader.aborted and reader.transport.aborts == 0
        vanished = Connection(gone, "w", None, 0.0, 4, None, transport=Transport())
        await close(vanished, 4001, "access token expired")  # nothing to write to: closed all the same
        assert vanished.closed and not vanished.aborted and vanished.transport.aborts == 0
        hub.remove(silent)
        hub.remove(reader)
        assert hub.total == 0 and hub.stats.aborted == 1

    asyncio.run(scenario())


def test_the_sweeper_closes_connections_whose_token_expired_once_each() -> None:
    """Hub.sweep_expired, one task for the instance: a connection whose token expired is closed with 4001 and
    counted once however many sweeps follow; one whose token is still valid stays open."""
    import asyncio
    import time

    from functions.ws_bridge.hub import Connection, Hub
    from shared.models.ws import CLOSE_TOKEN_EXPIRED

    async def scenario() -> None:
        sent: dict[str, list[dict[str, Any]]] = {"expired": [], "valid": []}

        def sender(name: str) -> Callable[[dict[str, Any]], Any]:
            async def send(message: dict[str, Any]) -> None:
                sent[name].append(message)

            return send

        hub = Hub(10)
        expired = Connection(sender("expired"), "u", None, time.time() - 1, 4, None)
        valid = Connection(sender("valid"), "u", None, time.time() + 3600, 4, None)
        hub.add(expired)
        hub.add(valid)
        sweeper = asyncio.create_task(hub.sweep_expired(interval_s=0.001))
        for _ in range(500):
            if sent["expired"]:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # more sweeps: the closed connection is not closed or counted again
        sweeper.cancel()
        assert [m["code"] for m in sent["expired"]] == [CLOSE_TOKEN_EXPIRED]
        assert expired.closed and not valid.closed and sent["valid"] == []
        assert hub.stats.expired_closed == 1

    asyncio.run(scenario())


def test_a_write_to_a_gone_peer_closes_the_connection_and_frames_after_it_are_dropped() -> None:
    """The writer's send raises (the peer is gone): the connection is marked closed at once, a replay waiting for
    room returns, and later frames are dropped without a new writer (the receive loop cleans up)."""
    import asyncio

    from functions.ws_bridge.hub import Connection

    async def scenario() -> None:
        attempts: list[str] = []
        gate = asyncio.Event()

        async def send(message: dict[str, Any]) -> None:
            attempts.append(message["text"])
            await gate.wait()
            raise ConnectionResetError("the peer is gone")

        conn = Connection(send, "u", None, 0.0, 1, None)
        assert conn.enqueue("a")
        await asyncio.sleep(0)  # the writer takes "a"; its send waits, then fails
        assert conn.enqueue("b")  # the queue (1) is full again
        waiting = asyncio.create_task(conn.put("c"))  # a replay waits for room
        await asyncio.sleep(0.01)
        assert not waiting.done()
        gate.set()
        await asyncio.wait_for(waiting, 5)  # woken by the failed write, not left waiting
        for _ in range(100):
            if conn.writer is None:
                break
            await asyncio.sleep(0.01)
        assert conn.closed and attempts == ["a"]
        assert conn.enqueue("d")  # dropped: the client resumes from the log
        assert conn.writer is None and "c" not in (conn.pending or ()) and "d" not in (conn.pending or ())
        sub = Subscription.start(THREAD, 10)
        Shell({}).drive(sub)
        conn.subscriptions[THREAD] = sub
        assert conn.offer(live("r", 1)) is Offer.SKIPPED

    asyncio.run(scenario())


def test_stop_tasks_cancels_the_connections_tasks_and_writer_but_not_its_caller() -> None:
    """On disconnect the endpoint stops what the connection still runs (a replay, a chat, the writer); a task of
    the connection that calls stop_tasks itself is not cancelled by it."""
    import asyncio

    from functions.ws_bridge.hub import Connection

    async def scenario() -> None:
        never = asyncio.Event()

        async def stuck(message: dict[str, Any]) -> None:
            await never.wait()  # a client that does not read

        conn = Connection(stuck, "u", None, 0.0, 4, None)
        assert conn.enqueue("a")
        replay = conn.spawn(never.wait())
        await asyncio.sleep(0)  # the writer is now waiting on the client
        writer = conn.writer
        assert writer is not None

        async def stops_from_inside() -> str:
            conn.stop_tasks()
            await asyncio.sleep(0)
            return "finished"

        caller = conn.spawn(stops_from_inside())
        assert await asyncio.wait_for(caller, 5) == "finished"
        for _ in range(100):
            if replay.done() and writer.done():
                break
            await asyncio.sleep(0.01)
        assert replay.cancelled() and writer.cancelled()

    asyncio.run(scenario())


def test_what_every_connection_holds_has_no_instance_dict() -> None:
    """Issue 18 (idle memory, docs/PERFORMANCE.md): the Connection and each of its Subscriptions live as long
    as the socket, so they use slots; an instance dict would add to every idle connection."""
    from functions.ws_bridge.hub import Connection

    sub = Subscription.start(THREAD, 10)
    conn = Connection(None, "u", None, 0.0, 1, None)
    conn.subscriptions[THREAD] = sub
    assert not hasattr(conn, "__dict__") and not hasattr(sub, "__dict__")


def test_the_instance_subscribes_to_agent_events_in_order_with_a_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    """fanout.py at start: the instance's own subscription on agent-events, with message ordering (the worker
    publishes with the thread id as ordering key, so a thread's events arrive in order) and an expiration TTL
    (an instance that dies without deleting it leaves nothing behind); then it streams into the callback. The
    Pub/Sub client is faked in sys.modules: importing the real one would cost every mutant run half a second."""
    import sys
    from types import ModuleType, SimpleNamespace

    from functions.ws_bridge.fanout import EventSubscription

    calls: list[Any] = []

    class Subscriber:
        def create_subscription(self, request: dict[str, Any], timeout: float) -> None:
            calls.append(("create", request))

        def subscribe(self, name: str, callback: Callable[[Any], None]) -> str:
            calls.append(("subscribe", name, callback))
            return "stream"

    fake = SimpleNamespace(SubscriberClient=Subscriber)
    monkeypatch.setitem(sys.modules, "google.cloud.pubsub_v1", fake)
    google_cloud = sys.modules.get("google.cloud")
    if isinstance(google_cloud, ModuleType):
        monkeypatch.setattr(google_cloud, "pubsub_v1", fake, raising=False)
    subscription = EventSubscription("proj", 3600, lambda u: True, lambda u, d: None).start()
    assert subscription.name.startswith("projects/proj/subscriptions/ws-bridge-")
    [(create, request), subscribe] = calls
    assert (request["name"], request["topic"]) == (subscription.name, "projects/proj/topics/agent-events")
    assert request["enable_message_ordering"] is True
    assert request["expiration_policy"] == {"ttl": {"seconds": 3600}}
    assert subscribe == ("subscribe", subscription.name, subscription._callback)


def test_events_from_pubsub_threads_reach_the_loop_only_while_it_runs() -> None:
    """Hub.publish_threadsafe, called on the Pub/Sub client's threads: before the loop is known and after it
    closed (start, shutdown) an event is dropped quietly (a raise would count it as malformed in fanout.py);
    while it runs, the event is routed on it."""
    import asyncio

    from functions.ws_bridge.hub import Hub

    hub = Hub(10)
    hub.publish_threadsafe("u", live("r", 1))  # no loop yet
    closed = asyncio.new_event_loop()
    closed.close()
    hub.loop = closed
    hub.publish_threadsafe("u", live("r", 1))  # the loop is gone
    assert hub.stats.received == 0

    async def scenario() -> None:
        hub.loop = asyncio.get_running_loop()
        await asyncio.to_thread(hub.publish_threadsafe, "u", live("r", 1))
        for _ in range(100):
            if hub.stats.received:
                break
            await asyncio.sleep(0.01)
        assert hub.stats.received == 1 and hub.stats.dropped_no_owner == 1  # routed: nobody "u" here

    asyncio.run(scenario())


def test_without_proc_the_open_descriptors_are_guessed(monkeypatch: pytest.MonkeyPatch) -> None:
    """limits.open_fds reads /proc/self/fd; where there is none (not Linux) it guesses instead of failing the
    start."""
    from types import SimpleNamespace

    from functions.ws_bridge import limits

    def listdir(path: str) -> list[str]:
        raise FileNotFoundError(path)

    assert limits.open_fds() > 0
    monkeypatch.setattr(limits, "os", SimpleNamespace(listdir=listdir))
    assert limits.open_fds() > 0
