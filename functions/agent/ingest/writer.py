"""Writes one ingest request's rows as one batch, with back-pressure instead of loss.

Each request (an exporter's batch of spans, LiteLLM's batch of payloads) is one transaction: a multi-row INSERT
of its records (idempotent by request_id), the per-source counters and one data-version bump. An instance
writes at most INGEST_MAX_CONCURRENT_WRITES batches at once; a request that cannot get a slot within
INGEST_QUEUE_WAIT_S, or whose statements exceed INGEST_STATEMENT_TIMEOUT_MS (a slow or locked database), is
rolled back and answered 429 with Retry-After: nothing is half-stored, and the exporter sends the same batch
again later (OTLP/HTTP clients retry 429; the span ids make the retry harmless).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from functions.agent import plans
from functions.agent.ingest.otlp import Mapped
from functions.agent.usage import store
from shared.errors import ApiError

# query_canceled (statement_timeout), lock_not_available (lock_timeout), too_many_connections
SLOW_SQLSTATES = {"57014", "55P03", "53300"}

_SOURCES_UPSERT = """
INSERT INTO usage_ingest_sources AS s (user_id, source, records, duplicates, ignored, rejected, last_record_ts,
                                       last_ingested_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, CASE WHEN %s > 0 THEN now() END)
ON CONFLICT (user_id, source) DO UPDATE
   SET records = s.records + EXCLUDED.records, duplicates = s.duplicates + EXCLUDED.duplicates,
       ignored = s.ignored + EXCLUDED.ignored, rejected = s.rejected + EXCLUDED.rejected,
       last_record_ts = GREATEST(s.last_record_ts, EXCLUDED.last_record_ts),
       last_ingested_at = COALESCE(EXCLUDED.last_ingested_at, s.last_ingested_at)
"""
# Marks the user's rollups for a refresh at most once per interval; the caller asks for it when a row returns.
_REQUEST_ROLLUP = """
UPDATE usage_state SET rollup_requested_at = now()
 WHERE user_id = %s AND (rollup_requested_at IS NULL OR rollup_requested_at < now() - %s * interval '1 second')
RETURNING version
"""


@dataclass
class Written:
    inserted: int
    duplicates: int
    data_version: int | None
    rollup_due: bool


class WriteSlots:
    """Bounded concurrent writes per instance (one per settings object, like the database pool)."""

    _lock = threading.Lock()
    _by_size: dict[int, threading.BoundedSemaphore] = {}

    @classmethod
    def get(cls, size: int) -> threading.BoundedSemaphore:
        with cls._lock:
            if size not in cls._by_size:
                cls._by_size[size] = threading.BoundedSemaphore(size)
            return cls._by_size[size]


def too_busy(message: str, retry_after: int) -> ApiError:
    return ApiError(429, "ingest_busy", message, headers={"Retry-After": str(retry_after)})


def _sqlstate(exc: BaseException) -> str | None:
    from shared.db.connect import sqlstate

    return sqlstate(exc)


def write(db: Any, settings: Any, user_id: str, source: str, mapped: Mapped) -> Written:
    """Store the batch; ApiError 429 (Retry-After) when this instance or the database cannot take it now."""
    slots = WriteSlots.get(settings.ingest_max_concurrent_writes)
    retry_after = settings.ingest_retry_after_s
    if not slots.acquire(timeout=settings.ingest_queue_wait_s):
        raise too_busy("this instance is writing as many batches as it may; send the batch again later", retry_after)
    try:
        return _write(db, settings, user_id, source, mapped)
    except Exception as exc:
        if _sqlstate(exc) in SLOW_SQLSTATES:
            raise too_busy(
                "the database is slow right now; nothing of this batch was stored, send it again later", retry_after
            ) from None
        raise
    finally:
        slots.release()


def _write(db: Any, settings: Any, user_id: str, source: str, mapped: Mapped) -> Written:
    timeout_ms = int(settings.ingest_statement_timeout_ms)
    rows = mapped.rows
    newest = max((r.ts for r in rows), default=None)
    with db.transaction() as tx:
        # SET LOCAL takes no parameters; the values are validated integers from the settings.
        tx.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
        tx.execute(f"SET LOCAL lock_timeout = {timeout_ms}")
        plan = plans.lock_for_rows(tx, settings, user_id) if rows else None
        inserted = store.insert_records(tx, user_id, None, rows) if rows else 0
        if plan is not None and inserted:
            plans.check_rows(tx, settings, user_id, plan, len(rows))  # 403 usage_rows_limit, rolled back
        duplicates = len(rows) - inserted
        tx.execute(
            _SOURCES_UPSERT,
            [user_id, source, inserted, duplicates, mapped.ignored, mapped.rejected, newest, inserted],
        )
        version = None
        due = False
        if inserted:
            version = store.bump_version(tx, user_id, live=True)
            due = tx.scalar(_REQUEST_ROLLUP, [user_id, int(settings.ingest_rollup_refresh_s)]) is not None
    return Written(inserted, duplicates, version, due)


def forget_rollup_request(db: Any, user_id: str) -> None:
    db.execute("UPDATE usage_state SET rollup_requested_at = NULL WHERE user_id = %s", [user_id])
