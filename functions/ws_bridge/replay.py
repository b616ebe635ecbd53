"""Resume from the Firestore event log (``runs/{run_id}/events/{seq:010d}``), merged with live events.

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

from functions.ws_bridge.hub import Connection, Subscription, close
from shared.models.events import AgentEvent
from shared.models.ws import CLOSE_TRY_AGAIN

log = logging.getLogger("ws_bridge.replay")


def _runs() -> Any:
    from shared.firestore import collection_name, get_client

    return get_client().collection(collection_name("runs"))


def owned_runs(user_id: str, thread_id: str, run_id: str | None) -> list[str]:
    """The runs to replay: the one named (if it is this user's, in this thread), else every run of the
    thread, oldest first."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    runs = _runs()
    if run_id:
        snap = runs.document(run_id).get()
        ok = snap.exists and snap.get("user_id") == user_id and snap.get("thread_id") == thread_id
        return [run_id] if ok else []
    docs = [d for d in runs.where(filter=FieldFilter("thread_id", "==", thread_id)).stream()]
    mine = [d.to_dict() | {"_id": d.id} for d in docs]
    mine = [d for d in mine if d.get("user_id") == user_id]
    mine.sort(key=lambda d: str(d.get("created_at") or d.get("updated_at") or ""))
    return [d["_id"] for d in mine]


def read_page(run_id: str, after_seq: int, limit: int) -> list[AgentEvent]:
    from google.cloud.firestore_v1.base_query import FieldFilter

    from shared.firestore import decode_nested_arrays

    query = (
        _runs()
        .document(run_id)
        .collection("events")
        .where(filter=FieldFilter("seq", ">", after_seq))
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


async def catch_up(
    conn: Connection,
    sub: Subscription,
    events: AsyncIterator[AgentEvent],
    page_size: int,
    ack: dict[str, Any] | None = None,
) -> int:
    """Send the log's events, then what live traffic brought meanwhile (runs deferred by a full buffer are
    read again from the log, the buffer is merged), then ``ack``; end buffering. Returns how many events came
    from the log. Awaiting the queue here is the backpressure of a replay: a long replay never overflows the
    send queue, it waits for the client to read."""
    replayed = 0

    def current() -> bool:
        return not conn.closed and conn.subscriptions.get(sub.thread_id) is sub

    async def send(source: AsyncIterator[AgentEvent]) -> bool:
        nonlocal replayed
        async for event in source:
            if not current():
                return False
            if sub.accept(event):
                await conn.queue.put(event.to_frame())
                replayed += 1
        return True

    if not await send(events):
        return replayed
    while current():
        if sub.deferred:
            runs, sub.deferred = sub.deferred, {}
            for run_id, lowest in runs.items():
                after = sub.last_seq.get(run_id, lowest - 1)
                if not await send(log_events(conn.user_id, sub.thread_id, run_id, after, page_size)):
                    return replayed
            continue
        if sub.buffer:
            pending, sub.buffer = sub.buffer, []
            for delivery in pending:
                if sub.accept(delivery.event):
                    await conn.queue.put(delivery.frame)
            continue
        if ack is not None:
            frame, ack = _dumps({**ack, "replayed": replayed}), None
            await conn.queue.put(frame)
            continue
        sub.replaying = False  # no await between the empty checks and this: nothing can slip in
        break
    return replayed


def _dumps(body: dict[str, Any]) -> str:
    import json

    return json.dumps(body, separators=(",", ":"))


def repairer(page_size: int):  # noqa: ANN201 - returns the hub's RepairFn
    async def repair(conn: Connection, sub: Subscription, run_id: str) -> None:
        """A live event skipped a seq: read the missing range from the log, then merge the buffer."""
        after = sub.last_seq.get(run_id, 0)
        try:
            await catch_up(conn, sub, log_events(conn.user_id, sub.thread_id, run_id, after, page_size), page_size)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("gap repair failed", extra={"run_id": run_id, "reason": type(exc).__name__})
            await close(conn, CLOSE_TRY_AGAIN, "could not fill a gap; reconnect and resume with after_seq")

    return repair
