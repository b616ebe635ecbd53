"""Runs: creation (with the user's message), claims by the worker, completion, cancel, views."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from functions.agent.pipeline_api import TokenUsage
from shared.db.database import Database, Tx

TERMINAL = ("completed", "failed", "cancelled")
USAGE_COLUMNS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")

RUN_COLUMNS = """r.id::text AS id, r.thread_id::text AS thread_id, r.user_id::text AS user_id,
    r.message_id::text AS message_id, r.status, r.attempt, r.claimed_by, r.claimed_at, r.cancel_requested,
    r.last_seq, r.error_code, r.error_message, r.input_tokens, r.cached_input_tokens, r.cache_write_tokens,
    r.output_tokens, r.reasoning_tokens, r.cost_usd, r.created_at, r.started_at, r.completed_at"""


def get_run(db: Database | Tx, run_id: str, user_id: str | None = None) -> dict[str, Any] | None:
    sql = f"SELECT {RUN_COLUMNS} FROM runs r WHERE r.id = %s"
    params: list[Any] = [run_id]
    if user_id is not None:
        sql += " AND r.user_id = %s"
        params.append(user_id)
    return db.one(sql, params)


def answer_message_id(db: Database | Tx, run_id: str) -> str | None:
    return db.scalar("SELECT id::text FROM messages WHERE run_id = %s AND role = 'assistant'", [run_id])


def _ms(later: datetime | None, earlier: datetime | None) -> int | None:
    if later is None or earlier is None:
        return None
    return int((later - earlier).total_seconds() * 1000)


def run_view(row: dict[str, Any], answer_id: str | None = None) -> dict[str, Any]:
    """The public shape of a run (GET /api/runs/{id})."""
    return {
        "id": row["id"],
        "thread_id": row["thread_id"],
        "message_id": row["message_id"],
        "answer_message_id": answer_id,
        "status": row["status"],
        "attempt": row["attempt"],
        "cancel_requested": row["cancel_requested"],
        "last_seq": row["last_seq"],
        "error": {"code": row["error_code"], "message": row["error_message"]} if row["error_code"] else None,
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "completed_at": row["completed_at"],
        "queue_ms": _ms(row["started_at"], row["created_at"]),
        "duration_ms": _ms(row["completed_at"], row["started_at"]),
        "usage": {c: int(row[c]) for c in USAGE_COLUMNS},
        "cost_usd": float(row["cost_usd"]),
    }


def claim(tx: Tx, run_id: str, worker_id: str) -> dict[str, Any] | None:
    """Take the run for this worker (queued, or running under a worker that died). Returns the new row with
    ``previous_status``; None when the run is finished or gone. One statement, so that on an autocommit
    connection (the worker's run lock) it is one round trip before the run's first event (issue 18)."""
    return tx.one(
        f"""WITH previous AS (SELECT status AS was FROM runs WHERE id = %s FOR UPDATE)
            UPDATE runs r SET status = 'running', attempt = r.attempt + 1, claimed_by = %s, claimed_at = now(),
                   started_at = COALESCE(r.started_at, now())
              FROM previous
             WHERE r.id = %s AND previous.was IN ('queued', 'running')
         RETURNING {RUN_COLUMNS}, previous.was AS previous_status""",
        [run_id, worker_id, run_id],
    )


def heartbeat(db: Database, run_id: str, attempt: int, last_seq: int) -> dict[str, Any] | None:
    """Refresh the claim and read the cancel flag in one round trip. None: the run is no longer ours."""
    return db.one(
        """UPDATE runs SET claimed_at = now(), last_seq = GREATEST(last_seq, %s)
            WHERE id = %s AND attempt = %s AND status = 'running'
        RETURNING cancel_requested""",
        [last_seq, run_id, attempt],
    )


def run_totals(tx: Tx, run_id: str) -> tuple[TokenUsage, Decimal]:
    row = tx.one(
        """SELECT COALESCE(SUM(input_tokens), 0) AS i, COALESCE(SUM(cached_input_tokens), 0) AS c,
                  COALESCE(SUM(cache_write_tokens), 0) AS w, COALESCE(SUM(output_tokens), 0) AS o,
                  COALESCE(SUM(reasoning_tokens), 0) AS r, COALESCE(SUM(cost_usd), 0) AS cost
             FROM cost_ledger WHERE run_id = %s""",
        [run_id],
    )
    assert row is not None
    usage = TokenUsage(int(row["i"]), int(row["c"]), int(row["w"]), int(row["o"]), int(row["r"]))
    return usage, Decimal(row["cost"])


def finish(
    tx: Tx,
    run_id: str,
    attempt: int,
    status: str,
    last_seq: int,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
) -> dict[str, Any] | None:
    """Mark the run finished with its totals from the ledger; None if this attempt no longer owns it."""
    usage, cost = run_totals(tx, run_id)
    return tx.one(
        f"""UPDATE runs r SET status = %s, completed_at = now(), last_seq = %s, error_code = %s, error_message = %s,
                   input_tokens = %s, cached_input_tokens = %s, cache_write_tokens = %s, output_tokens = %s,
                   reasoning_tokens = %s, cost_usd = %s
             WHERE r.id = %s AND r.attempt = %s AND r.status = 'running'
         RETURNING {RUN_COLUMNS}""",
        [status, last_seq, error_code, error_message, *usage.as_tuple(), cost, run_id, attempt],
    )


def fail_unclaimed(tx: Tx, run_id: str, error_code: str, error_message: str) -> dict[str, Any] | None:
    """Fail a run nobody is executing (stale or over budget before it started)."""
    usage, cost = run_totals(tx, run_id)
    return tx.one(
        f"""UPDATE runs r SET status = 'failed', completed_at = now(), error_code = %s, error_message = %s,
                   input_tokens = %s, cached_input_tokens = %s, cache_write_tokens = %s, output_tokens = %s,
                   reasoning_tokens = %s, cost_usd = %s
             WHERE r.id = %s AND r.status IN ('queued', 'running')
         RETURNING {RUN_COLUMNS}""",
        [error_code, error_message, *usage.as_tuple(), cost, run_id],
    )


def set_last_seq(db: Database, run_id: str, seq: int) -> None:
    db.execute("UPDATE runs SET last_seq = GREATEST(last_seq, %s) WHERE id = %s", [seq, run_id])


def request_cancel(tx: Tx, run_id: str, user_id: str, lease_s: float) -> dict[str, Any] | None:
    """Runs nobody executes (queued, or running under a worker whose heartbeat stopped) are cancelled at once;
    running ones are flagged for the worker to stop between steps."""
    return tx.one(
        f"""WITH target AS (
                SELECT id, (status = 'queued' OR claimed_at IS NULL
                            OR claimed_at < now() - make_interval(secs => %s)) AS unattended
                  FROM runs WHERE id = %s AND user_id = %s AND status IN ('queued', 'running') FOR UPDATE)
            UPDATE runs r SET cancel_requested = true,
                   status = CASE WHEN t.unattended THEN 'cancelled' ELSE r.status END,
                   completed_at = CASE WHEN t.unattended THEN now() ELSE r.completed_at END
              FROM target t WHERE r.id = t.id
         RETURNING {RUN_COLUMNS}""",
        [lease_s, run_id, user_id],
    )


def history(db: Database, thread_id: str, before_message_id: str, limit: int) -> list[dict[str, Any]]:
    """Earlier messages of the thread (oldest first), excluding the run's own message and anything after it."""
    if limit <= 0:
        return []
    rows = db.all(
        """SELECT role, content FROM messages
            WHERE thread_id = %s AND id <> %s
              AND created_at <= (SELECT created_at FROM messages WHERE id = %s)
            ORDER BY created_at DESC, id DESC LIMIT %s""",
        [thread_id, before_message_id, before_message_id, limit],
    )
    return list(reversed(rows))


def message_content(db: Database, message_id: str) -> str | None:
    return db.scalar("SELECT content FROM messages WHERE id = %s", [message_id])
