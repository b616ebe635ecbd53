"""The delivery rules of one thread subscription, without I/O (the shape of websockets' sans-I/O protocol).

``Subscription`` is told what happened (a live event, an event read from the log, a failed log read) and
answers what to do (send, buffer, read the log after seq N, close with 1013); it never awaits. The I/O shell
around it: hub.py (routes live events from Pub/Sub and enqueues what is to be sent), replay.py (reads the
Firestore log and feeds it in until the subscription is live) and frames.py (subscribe frames).

The rules: per run, events go out in ``seq`` order and each at most once (``last_seq``). While the
subscription replays from the log, live events are buffered and merged after it, skipping what the log
already sent. A live event that skips a seq switches the subscription back to buffering while the missing
range is read from the log. A full replay buffer drops its events and keeps only "re-read run R from seq S"
(every live event is in the log before it is published, so nothing is lost).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from shared.models.events import AgentEvent
from shared.models.ws import CLOSE_TRY_AGAIN

log = logging.getLogger("ws_bridge.hub")


@dataclass(frozen=True, slots=True)
class Delivery:
    """An event and its frame, serialized once for every socket it goes to."""

    event: AgentEvent
    frame: str


class Offer(Enum):
    """What a live event did to a subscription."""

    SENT = "sent"  # send its frame now
    SKIPPED = "skipped"  # not subscribed, or already sent
    BUFFERED = "buffered"  # replaying: held until the replay is merged
    GAP = "gap"  # a seq is missing: buffered, and the subscription now wants a log read (next_step)
    DEFERRED = "deferred"  # replaying with a full buffer: dropped here, read again from the log later
    OVERFLOW = "overflow"  # the send queue is full, the consumer is too slow: the caller closes it with 1013


@dataclass(frozen=True, slots=True)
class ReadLog:
    """Read the log of ``run_id`` (every run of the thread when None) after ``after_seq``; feed each event
    to ``Subscription.from_log``, then ask ``next_step`` again."""

    run_id: str | None
    after_seq: int


@dataclass(frozen=True, slots=True)
class Send:
    """Send these frames, in order (awaiting the send queue: the backpressure of a replay)."""

    frames: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection with this code and reason."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Drop:
    """Remove this subscription and send the client this error frame."""

    error: dict[str, str]


SLOW_CONSUMER = Close(CLOSE_TRY_AGAIN, "consumer too slow; reconnect and resume with after_seq")
GAP_UNFILLED = Close(CLOSE_TRY_AGAIN, "could not fill a gap; reconnect and resume with after_seq")
REPLAY_UNAVAILABLE = Drop(
    {
        "type": "error",
        "code": "replay_unavailable",
        "message": "missed events could not be read; subscribe again shortly, or "
        "read GET /api/runs/{run_id}/events?after_seq=N",
    }
)


def _dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"))


@dataclass(eq=False, slots=True)
class Subscription:
    """One (connection, thread) subscription. Created replaying; ``next_step`` returns None once it is live."""

    thread_id: str
    buffer_limit: int
    replaying: bool = True
    buffer: list[Delivery] = field(default_factory=list)
    last_seq: dict[str, int] = field(default_factory=dict)
    # run id -> lowest seq dropped from a full buffer: read again from the log before the buffer is merged.
    deferred: dict[str, int] = field(default_factory=dict)
    replayed: int = 0  # events sent from the log (reported in the ``subscribed`` ack)
    repairing: bool = False  # replaying because of a gap (a failed read then closes the connection)
    _read: ReadLog | None = None  # the next log read (the requested replay, or a gap's range)
    _rereads: list[tuple[str, int]] = field(default_factory=list)  # deferred runs taken for reading, in order
    _ack: dict[str, Any] | None = None

    @classmethod
    def start(
        cls,
        thread_id: str,
        buffer_limit: int,
        run_id: str | None = None,
        after_seq: int | None = None,
        ack: dict[str, Any] | None = None,
    ) -> Subscription:
        """A new subscription, buffering live events from now on: replays the log after ``after_seq`` (of
        ``run_id``, or of every run of the thread) if either is given, then sends ``ack``."""
        sub = cls(thread_id, buffer_limit, _ack=ack)
        if run_id and after_seq is not None:
            sub.last_seq[run_id] = after_seq
        if after_seq is not None or run_id is not None:
            sub._read = ReadLog(run_id, after_seq or 0)
        return sub

    # -- events ---------------------------------------------------------------------------------------------
    def live(self, delivery: Delivery) -> Offer:
        """A live event of this thread (never OVERFLOW: the caller knows its send queue)."""
        event = delivery.event
        if self.replaying:
            if len(self.buffer) >= self.buffer_limit or event.run_id in self.deferred:
                self._defer(event)
                return Offer.DEFERRED
            self.buffer.append(delivery)
            return Offer.BUFFERED
        last = self.last_seq.get(event.run_id)
        if last is not None and event.seq <= last:
            return Offer.SKIPPED
        if last is not None and event.seq > last + 1:
            self.replaying = self.repairing = True
            self.buffer.append(delivery)
            self._read = ReadLog(event.run_id, last)
            return Offer.GAP
        self.last_seq[event.run_id] = event.seq
        return Offer.SENT

    def from_log(self, event: AgentEvent) -> str | None:
        """An event read from the log: its frame if it is to be sent, None if it was already sent."""
        if not self._accept(event):
            return None
        self.replayed += 1
        return event.to_frame()

    def next_step(self) -> ReadLog | Send | None:
        """After a log read or a send: what to do next, None once live. Order: the requested read, the runs
        deferred by a full buffer, the buffer merged, the ack; then live (no await can slip in between the
        empty checks and going live, since the caller does not await between them)."""
        if self._read is not None:
            read, self._read = self._read, None
            return read
        if not self._rereads and self.deferred:
            self._rereads, self.deferred = list(self.deferred.items()), {}
        if self._rereads:
            run_id, lowest = self._rereads.pop(0)
            return ReadLog(run_id, self.last_seq.get(run_id, lowest - 1))
        if self.buffer:
            pending, self.buffer = self.buffer, []
            return Send(tuple(d.frame for d in pending if self._accept(d.event)))
        if self._ack is not None:
            frame, self._ack = _dumps({**self._ack, "replayed": self.replayed}), None
            return Send((frame,))
        self.replaying = self.repairing = False
        return None

    def log_failed(self) -> Close | Drop:
        """A log read failed: a subscribe's replay is refused (the client subscribes again); a gap that cannot
        be filled closes the connection with 1013 (the client resumes with after_seq)."""
        return GAP_UNFILLED if self.repairing else REPLAY_UNAVAILABLE

    def closed(self) -> None:
        """The connection closed: hold nothing more."""
        self.buffer.clear()
        self.deferred.clear()
        self._rereads.clear()

    # -- rules ----------------------------------------------------------------------------------------------
    def _defer(self, event: AgentEvent) -> None:
        """The buffer is full: keep only where to re-read from, for the buffered events and this one."""
        for held in (*(d.event for d in self.buffer), event):
            lowest = self.deferred.get(held.run_id)
            if lowest is None or held.seq < lowest:
                self.deferred[held.run_id] = held.seq
        self.buffer.clear()

    def _accept(self, event: AgentEvent) -> bool:
        """True if the event is next for its run (or the first seen of it); records it as sent."""
        last = self.last_seq.get(event.run_id)
        if last is not None and event.seq <= last:
            return False
        if last is not None and event.seq > last + 1:
            # Only reached when the log itself lacks the range (it is read before this is called).
            log.warning("event log has a gap", extra={"run_id": event.run_id, "after": last, "seq": event.seq})
        self.last_seq[event.run_id] = event.seq
        return True
