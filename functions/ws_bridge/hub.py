"""The connections of one bridge instance and the routing of agent events to them (the I/O shell of the
delivery rules in delivery.py: which live event is sent, buffered or skipped is the subscription's answer).

Memory per connection is bounded twice: the send queue (``SEND_QUEUE_SIZE`` frames; full = slow consumer,
closed with 1013) and the replay buffer (``REPLAY_BUFFER_SIZE`` live events per subscription). A full replay
buffer does not close the connection: its events are dropped and only "re-read run R from seq S" is kept,
because every live event is in the event log before it is published.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from functions.ws_bridge.delivery import SLOW_CONSUMER, Delivery, Offer, Subscription
from functions.ws_bridge.limits import TokenBucket
from shared.models.ws import CLOSE_TOKEN_EXPIRED

__all__ = ["Connection", "Delivery", "Hub", "Offer", "Subscription", "close", "send_error"]

log = logging.getLogger("ws_bridge.hub")


@dataclass(eq=False, slots=True)  # identity semantics: connections live in sets
class Connection:
    """One accepted socket. What an idle one holds is kept small (issue 18: an idle connection should cost no
    more than in a bare uvicorn app): the frames waiting to be written, their writer task, the connection's own
    tasks and any waiting replay exist only while there is something to do (docs/PERFORMANCE.md)."""

    send: Callable[[dict[str, Any]], Awaitable[None]]  # the ASGI server's send of this socket
    user_id: str
    token: str | None
    expires_at: float
    queue_size: int  # frames waiting to be written at most (SEND_QUEUE_SIZE); beyond: slow consumer
    bucket: TokenBucket | None  # the client's frame rate; created with its first frame (full either way)
    auth_method: str = "token"
    close_timeout_s: float = 10.0
    connection_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    tasks: set[asyncio.Task[Any]] | None = None  # see spawn
    closed: bool = False
    aborted: bool = False  # its close frame could not be written: the socket was aborted
    transport: Any = None  # the server's transport: aborts a peer that does not read (see close)
    pending: deque[str] | None = None  # frames waiting for the writer, in order; None when there are none
    writer: asyncio.Task[None] | None = None  # writes `pending` to the socket; exists only while there are some
    room: list[asyncio.Future[None]] | None = None  # replays waiting for room in `pending` (see put)

    def enqueue(self, frame: str) -> bool:
        """False when ``queue_size`` frames are already waiting: the caller closes the connection (slow
        consumer). Frames for a closed connection are dropped (the client resumes from the log)."""
        if self.closed:
            return True
        if self.pending is None:
            self.pending = deque()
        elif len(self.pending) >= self.queue_size:
            return False
        self.pending.append(frame)
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._write_pending())
        return True

    async def put(self, frame: str) -> None:
        """Enqueue, waiting while ``queue_size`` frames are waiting: the backpressure of a replay, which never
        overflows the queue but waits for the client to read."""
        while not self.enqueue(frame):
            waiter = asyncio.get_running_loop().create_future()
            if self.room is None:
                self.room = []
            self.room.append(waiter)
            await waiter

    def queued(self) -> int:
        return len(self.pending) if self.pending is not None else 0

    def _wake_waiting_puts(self) -> None:
        # Every waiting put is woken and checks again (at most MAX_PENDING per connection): a put cancelled
        # after being woken cannot take the wake-up of another with it.
        room, self.room = self.room, None
        for waiter in room or ():
            if not waiter.done():
                waiter.set_result(None)

    async def _write_pending(self) -> None:
        # One writer at a time keeps the frames in order; it ends when nothing is left, so that an idle
        # connection holds neither a task nor a queue.
        try:
            while self.pending and not self.closed:
                frame = self.pending.popleft()
                self._wake_waiting_puts()
                await self.send({"type": "websocket.send", "text": frame})
        except Exception:  # the peer is gone; the receive loop cleans up
            self.closed = True
        finally:
            self.writer = None
            if not self.pending:
                self.pending = None
            if self.closed:
                self._wake_waiting_puts()

    def drop_pending(self) -> None:
        """On close: what is queued is dropped (the client resumes from the log); waiting puts return."""
        self.pending = None
        self._wake_waiting_puts()

    def send_json(self, body: dict[str, Any]) -> bool:
        return self.enqueue(json.dumps(body, separators=(",", ":")))

    def offer(self, delivery: Delivery) -> Offer:
        sub = self.subscriptions.get(delivery.event.thread_id)
        if sub is None or self.closed:
            return Offer.SKIPPED
        outcome = sub.live(delivery)
        if outcome is Offer.SENT and not self.enqueue(delivery.frame):
            return Offer.OVERFLOW
        return outcome

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A task owned by the connection: cancelled when it closes."""
        task = asyncio.get_running_loop().create_task(coro)
        if self.tasks is None:
            self.tasks = set()
        tasks = self.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    def stop_tasks(self) -> None:
        """Cancel the connection's tasks and its writer (not the caller's own task)."""
        current = asyncio.current_task()
        for task in (self.writer, *(self.tasks or ())):
            if task is not None and task is not current:
                task.cancel()


RepairFn = Callable[[Connection, Subscription], Coroutine[Any, Any, Any]]


def send_error(
    conn: Connection, code: str, message: str, client_message_id: str | None = None, retry_after_s: int | None = None
) -> None:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if client_message_id is not None:
        frame["client_message_id"] = client_message_id
    if retry_after_s is not None:  # a temporary refusal (a plan's rate or concurrency limit): when to retry
        frame["retry_after_s"] = retry_after_s
    if not conn.send_json(frame):
        conn.spawn(close(conn, SLOW_CONSUMER.code, SLOW_CONSUMER.reason))


@dataclass
class Stats:
    received: int = 0
    delivered: int = 0
    dropped_no_owner: int = 0
    gaps_repaired: int = 0
    replay_overflows: int = 0  # live events dropped from a full replay buffer (re-read from the log)
    slow_consumers_closed: int = 0
    aborted: int = 0  # peers that did not read even the close frame within CLOSE_TIMEOUT_S
    expired_closed: int = 0
    accepted: int = 0
    refused: int = 0


class Hub:
    def __init__(self, buffer_limit: int) -> None:
        self.by_user: dict[str, set[Connection]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.accepting = True
        self.buffer_limit = buffer_limit
        self.repair: RepairFn | None = None
        self.stats = Stats()
        self.total = 0

    def add(self, conn: Connection) -> None:
        self.by_user.setdefault(conn.user_id, set()).add(conn)
        self.total += 1
        self.stats.accepted += 1

    def remove(self, conn: Connection) -> None:
        conns = self.by_user.get(conn.user_id)
        if conns and conn in conns:
            conns.discard(conn)
            self.total -= 1
            self.stats.aborted += conn.aborted
            if not conns:
                del self.by_user[conn.user_id]

    def count(self, user_id: str) -> int:
        return len(self.by_user.get(user_id, ()))

    def all(self) -> list[Connection]:
        return [c for conns in self.by_user.values() for c in conns]

    # -- from the Pub/Sub client's threads ---------------------------------------------------------------
    def wants(self, user_id: str) -> bool:
        # A dict membership test is atomic under the GIL; a stale answer only costs one parse or one drop
        # that the owner's replay covers.
        return user_id in self.by_user

    def publish_threadsafe(self, user_id: str, delivery: Delivery) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.route, user_id, delivery)

    # -- on the event loop ---------------------------------------------------------------------------------
    def route(self, user_id: str, delivery: Delivery) -> None:
        self.stats.received += 1
        conns = self.by_user.get(user_id)
        if not conns:
            self.stats.dropped_no_owner += 1
            return
        for conn in list(conns):
            outcome = conn.offer(delivery)
            if outcome is Offer.SENT:
                self.stats.delivered += 1
            elif outcome is Offer.DEFERRED:
                self.stats.replay_overflows += 1
            elif outcome is Offer.OVERFLOW:
                self.stats.slow_consumers_closed += 1
                conn.spawn(close(conn, SLOW_CONSUMER.code, SLOW_CONSUMER.reason))
            elif outcome is Offer.GAP and self.repair is not None:
                self.stats.gaps_repaired += 1
                sub = conn.subscriptions[delivery.event.thread_id]
                conn.spawn(self.repair(conn, sub))

    async def sweep_expired(self, interval_s: float = 1.0) -> None:
        """One task for the whole instance (not one per connection): close connections whose token expired."""
        while True:
            await asyncio.sleep(interval_s)
            now = time.time()
            for conn in self.all():
                if conn.expires_at <= now and not conn.closed:
                    self.stats.expired_closed += 1
                    conn.spawn(close(conn, CLOSE_TOKEN_EXPIRED, "access token expired; reconnect with a fresh token"))


async def close(conn: Connection, code: int, reason: str) -> None:
    """Close once: drop what is queued (the client resumes from the log), stop the connection's tasks. A
    close frame that cannot be written within ``conn.close_timeout_s`` (the peer does not read) aborts the
    socket."""
    if conn.closed:
        return
    conn.closed = True
    log.info(
        "closing connection",
        extra={"connection_id": conn.connection_id, "user_id": conn.user_id, "close_code": code, "reason": reason},
    )
    current = asyncio.current_task()
    for task in list(conn.tasks or ()):
        if task is not current:
            task.cancel()
    conn.drop_pending()  # the writer, if any, ends after the frame it is writing
    for sub in conn.subscriptions.values():
        sub.closed()
    try:
        close_frame = {"type": "websocket.close", "code": code, "reason": reason}
        await asyncio.wait_for(conn.send(close_frame), conn.close_timeout_s)
    except TimeoutError:
        # uvicorn's close and ping timeout only *close* the transport, which waits for the unsent buffer to
        # drain, i.e. forever for a peer whose TCP window stays shut.
        transport = conn.transport
        if transport is not None:
            log.warning("peer does not read; aborting its socket", extra={"connection_id": conn.connection_id})
            conn.aborted = True
            transport.abort()
    except Exception:  # noqa: S110 - the peer is already gone
        pass
