"""Connections of one bridge instance and the routing of agent events to them, with gapless replay."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from shared.models.events import AgentEvent
from shared.models.ws import CLOSE_TRY_AGAIN

log = logging.getLogger("hub")


@dataclass
class Subscription:
    replaying: bool = True
    buffer: list[AgentEvent] = field(default_factory=list)
    sent: set[tuple[str, int]] = field(default_factory=set)


@dataclass(eq=False)  # identity semantics: connections live in sets
class Connection:
    websocket: Any
    user_id: str
    token: str | None
    expires_at: float
    queue: asyncio.Queue[str | None]
    connection_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    frame_times: list[float] = field(default_factory=list)
    closed: bool = False

    def enqueue(self, frame: str) -> bool:
        """False when the bounded queue is full: the caller closes the connection (slow consumer)."""
        try:
            self.queue.put_nowait(frame)
            return True
        except asyncio.QueueFull:
            return False

    def deliver(self, event: AgentEvent) -> bool:
        sub = self.subscriptions.get(event.thread_id)
        if sub is None:
            return True
        if sub.replaying:
            sub.buffer.append(event)
            return True
        key = (event.run_id, event.seq)
        if key in sub.sent:
            return True
        sub.sent.add(key)
        return self.enqueue(event.to_frame())

    def allow_frame(self, per_minute: int) -> bool:
        now = time.monotonic()
        self.frame_times = [t for t in self.frame_times if now - t < 60]
        if len(self.frame_times) >= per_minute:
            return False
        self.frame_times.append(now)
        return True


class Hub:
    def __init__(self) -> None:
        self.by_user: dict[str, set[Connection]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.delivered = 0

    def add(self, conn: Connection) -> None:
        self.by_user.setdefault(conn.user_id, set()).add(conn)

    def remove(self, conn: Connection) -> None:
        conns = self.by_user.get(conn.user_id)
        if conns:
            conns.discard(conn)
            if not conns:
                del self.by_user[conn.user_id]

    def count(self, user_id: str) -> int:
        return len(self.by_user.get(user_id, ()))

    def all(self) -> list[Connection]:
        return [c for conns in self.by_user.values() for c in conns]

    def publish_threadsafe(self, user_id: str, event: AgentEvent) -> None:
        """Called on the Pub/Sub client's threads."""
        if self.loop is not None and user_id in self.by_user:
            self.loop.call_soon_threadsafe(self.route, user_id, event)

    def route(self, user_id: str, event: AgentEvent) -> None:
        for conn in list(self.by_user.get(user_id, ())):
            if not conn.deliver(event):
                asyncio.ensure_future(close(conn, CLOSE_TRY_AGAIN, "consumer too slow; reconnect and resume"))
            else:
                self.delivered += 1


async def close(conn: Connection, code: int, reason: str) -> None:
    if conn.closed:
        return
    conn.closed = True
    conn.queue.put_nowait(None) if not conn.queue.full() else None
    try:
        await conn.websocket.close(code=code, reason=reason)
    except Exception:  # noqa: S110 - already gone
        pass
