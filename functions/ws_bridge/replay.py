"""Resume from the Firestore event log (``runs/{run_id}/events/{seq:010d}``), merged with live events: the I/O
shell of a subscription's replay (delivery.py decides what is read and sent).

Why no gap and no duplicate: the worker writes an event to the log *before* publishing it, and a
subscription buffers live events from before its first log read. So every event after ``after_seq`` is
either in the log when it is read, or published after the buffering started (hence in the buffer).
Merging keeps, per run, only events with a higher seq than the last one sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from functions.ws_bridge.delivery import SLOW_CONSUMER, Close, Send
from functions.ws_bridge.hub import Connection, Subscription, close
from shared.models.events import AgentEvent

log = logging.getLogger("ws_bridge.replay")


def _runs() -> Any:
    from shared.firestore import collection_name, get_client

    return get_client().collection(collection_name("runs"))


def owned_runs(user_id: str, thread_id: str, run_id: str | None) -> list[str]:
    """The runs to replay: the one named (if it is this user's, in this thread), else every run of the
    thread, oldest first."""
    from shared.firestore import field_filter

    runs = _runs()
    if run_id:
        snap = runs.document(run_id).get()
        ok = snap.exists and snap.get("user_id") == user_id and snap.get("thread_id") == thread_id
        return [run_id] if ok else []
    docs = [d for d in runs.where(filter=field_filter("thread_id", "==", thread_id)).stream()]
    mine = [d.to_dict() | {"_id": d.id} for d in docs]
    mine = [d for d in mine if d.get("user_id") == user_id]
    mine.sort(key=lambda d: str(d.get("created_at") or d.get("updated_at") or ""))
    return [d["_id"] for d in mine]


def read_page(run_id: str, after_seq: int, limit: int) -> list[AgentEvent]:
    from shared.firestore import decode_nested_arrays, field_filter

    query = (
        _runs()
        .document(run_id)
        .collection("events")
        .where(filter=field_filter("seq", ">", after_seq))
        .order_by("seq")
        .limit(limit)
    )
    events = []
    for snap in query.stream():
        doc = snap.to_dict()
        fields = {k: v for k, v in doc.items() if k not in ("user_id", "expires_at")}
        events.append(AgentEvent.model_validate(decode_nested_arrays(fields)))
    return events


async def log_events(
    user_id: str, thread_id: str, run_id: str | None, after_seq: int, page_size: int
) -> AsyncIterator[AgentEvent]:
    """Page by page, so a long run never sits in memory whole."""
    for rid in await asyncio.to_thread(owned_runs, user_id, thread_id, run_id):
        after = after_seq
        while True:
            page = await asyncio.to_thread(read_page, rid, after, page_size)
            for event in page:
                yield event
            if len(page) < page_size:
                break
            after = page[-1].seq


async def catch_up(conn: Connection, sub: Subscription, page_size: int) -> int:
    """Carry out the subscription's replay (delivery.py decides what): read the log where it asks, send what
    it answers, until it is live. Returns how many events came from the log. Awaiting the queue here is the
    backpressure of a replay: a long replay never overflows the send queue, it waits for the client to read."""

    def current() -> bool:
        return not conn.closed and conn.subscriptions.get(sub.thread_id) is sub

    while current():
        step = sub.next_step()
        if step is None:
            break
        if isinstance(step, Send):
            for frame in step.frames:
                await conn.put(frame)
            continue
        async for event in log_events(conn.user_id, sub.thread_id, step.run_id, step.after_seq, page_size):
            if not current():
                return sub.replayed
            frame = sub.from_log(event)
            if frame is not None:
                await conn.put(frame)
    return sub.replayed


async def replay(conn: Connection, sub: Subscription, page_size: int) -> None:
    """``catch_up``, and what the subscription says to do when the log cannot be read."""
    try:
        await catch_up(conn, sub, page_size)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning("gap repair failed" if sub.repairing else "replay failed", extra={"reason": type(exc).__name__})
        action = sub.log_failed()
        if isinstance(action, Close):
            await close(conn, action.code, action.reason)
            return
        if conn.subscriptions.get(sub.thread_id) is sub:
            conn.subscriptions.pop(sub.thread_id)
        if not conn.send_json(action.error):
            conn.spawn(close(conn, SLOW_CONSUMER.code, SLOW_CONSUMER.reason))


def repairer(page_size: int):  # noqa: ANN201 - returns the hub's RepairFn
    async def repair(conn: Connection, sub: Subscription) -> None:
        """A live event skipped a seq: the subscription asks for the missing range, then merges its buffer."""
        await replay(conn, sub, page_size)

    return repair
