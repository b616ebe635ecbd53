"""The terminal event of a finished run, built from what Cloud SQL says (the source of truth for outcomes).

Used whenever a run is finished but its terminal event may be missing from the log: a worker that died
between committing the outcome and emitting the event, a queued run cancelled through the API, a stale run
failed by the API. Idempotent: if the log already ends with a terminal event it is only published again.
"""

from __future__ import annotations

import logging
from typing import Any

from functions.agent.eventlog import EventLog, RunRef, SeqConflict, is_terminal
from functions.agent.store import runs as run_store
from shared.db.database import Database
from shared.models.events import AgentEvent

log = logging.getLogger("agent.terminal")


def completed_data(db: Database, row: dict[str, Any]) -> dict[str, Any]:
    answer = db.one(
        "SELECT id::text AS id, content, metadata FROM messages WHERE run_id = %s AND role = 'assistant'", [row["id"]]
    )
    view = run_store.run_view(row, answer["id"] if answer else None)
    return {
        "message_id": answer["id"] if answer else None,
        "content": answer["content"] if answer else "",
        "metadata": answer["metadata"] if answer else {},
        "usage": view["usage"],
        "cost_usd": view["cost_usd"],
        "duration_ms": view["duration_ms"],
    }


def terminal_event_for(db: Database, row: dict[str, Any], seq: int) -> AgentEvent:
    status = row["status"]
    base = {"run_id": row["id"], "thread_id": row["thread_id"], "seq": seq}
    if status == "completed":
        return AgentEvent(type="agent_completed", agent_name="supervisor", data=completed_data(db, row), **base)
    if status == "cancelled":
        return AgentEvent(
            type="run_cancelled", agent_name="supervisor", data={"reason": "cancelled by the user"}, **base
        )
    return AgentEvent(
        type="agent_error",
        agent_name="supervisor",
        data={
            "code": row["error_code"] or "run_failed",
            "message": row["error_message"] or "the run failed",
            "retryable": False,
        },
        **base,
    )


def ensure_terminal_event(db: Database, eventlog: EventLog, row: dict[str, Any]) -> AgentEvent | None:
    """Make sure the log of a finished run ends with its terminal event, and that it is published."""
    if row["status"] not in run_store.TERMINAL:
        return None
    ref = RunRef(row["id"], row["thread_id"], row["user_id"])
    last = eventlog.last_event(row["id"])
    if is_terminal(last):
        assert last is not None
        eventlog.publish(ref, last)
        return last
    event = terminal_event_for(db, row, (last.seq if last else 0) + 1)
    try:
        eventlog.emit(ref, event)
    except SeqConflict:
        # Someone (the API or another delivery) wrote it a moment ago.
        return eventlog.last_event(row["id"])
    run_store.set_last_seq(db, row["id"], event.seq)
    log.info("terminal event written after the fact", extra={"run_id": row["id"], "type": event.type, "seq": event.seq})
    return event
