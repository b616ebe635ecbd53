"""Usage records in SQL: atomic, idempotent ingestion; the per-user summary; deletion; the data version that
keeps precomputed analyses (usage_rollups) honest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from functions.agent.usage.formats import parse_body
from functions.agent.usage.schema import RowError, UsageRow, build_row, collect_errors

MAX_ERRORS_REPORTED = 100
INSERT_CHUNK = 5000

_INSERT = """
INSERT INTO usage_records (user_id, upload_id, request_id, ts, provider, model, input_tokens, cached_input_tokens,
                           cache_write_tokens, output_tokens, reasoning_tokens, latency_ms, status, feature, end_user,
                           prefix_hash, prefix_tokens, request_hash, max_tokens, interactive)
SELECT %s::uuid, %s::uuid, * FROM unnest(%s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::bigint[],
                                 %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::int[], %s::text[],
                                 %s::text[], %s::text[], %s::text[], %s::int[], %s::text[], %s::int[], %s::bool[])
ON CONFLICT (user_id, request_id) DO NOTHING
"""


@dataclass
class Validation:
    format: str
    rows: list[UsageRow] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0
    received: int = 0


def validate_body(body: bytes, content_type: str, fmt: str, first_row: int = 1) -> Validation:
    """Every row validated; errors carry the row number (offset by ``first_row`` - 1 for parts), the field and
    the reason. Raises formats.BodyError when the body cannot be read at all."""
    used, raw_rows = parse_body(body, content_type, fmt)
    result = Validation(format=used, received=len(raw_rows))
    offset = first_row - 1
    for raw in raw_rows:
        problems: list[RowError] = [raw.error] if raw.error else collect_errors(raw.data or {})
        if not problems:
            result.rows.append(build_row(raw.data or {}))
            continue
        result.error_count += len(problems)
        for problem in problems:
            if len(result.errors) < MAX_ERRORS_REPORTED:
                result.errors.append(
                    {"row": raw.row + offset, "line": raw.line, "field": problem.field, "reason": problem.reason}
                )
    return result


def _arrays(rows: list[UsageRow]) -> list[list[Any]]:
    return [[getattr(r, name) for r in rows] for name in UsageRow.columns()]


def bump_version(tx: Any, user_id: str, live: bool = False) -> int:
    """The user's next data version. ``live``: a live-ingested append (functions/agent/ingest), after which a
    rollup of an earlier version may still be served for a minute; anything else (an upload, a delete) also
    raises ``live_floor``, below which no rollup is served again."""
    floor = "usage_state.live_floor" if live else "usage_state.version + 1"
    return int(
        tx.scalar(
            f"""INSERT INTO usage_state (user_id, version, live_floor) VALUES (%s, 1, %s)
           ON CONFLICT (user_id) DO UPDATE SET version = usage_state.version + 1, live_floor = {floor},
                                               updated_at = now()
           RETURNING version""",
            [user_id, 0 if live else 1],
        )
    )


def insert_records(tx: Any, user_id: str, upload_id: str | None, rows: list[UsageRow]) -> int:
    """Rows inserted (multi-row INSERTs of INSERT_CHUNK rows); rows whose request_id is stored are skipped."""
    inserted = 0
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[start : start + INSERT_CHUNK]
        inserted += tx.execute(_INSERT, [user_id, upload_id, *_arrays(chunk)])
    return inserted


def data_version(db: Any, user_id: str) -> int:
    return int(db.scalar("SELECT COALESCE((SELECT version FROM usage_state WHERE user_id = %s), 0)", [user_id]))


def insert_rows(
    db: Any, user_id: str, rows: list[UsageRow], fmt: str, part: int | None = None, plans: Any = None
) -> dict[str, Any]:
    """All rows in one transaction (all or none); rows whose request_id is already stored are skipped.

    ``plans`` (a PlansSection): refuse with 403 usage_rows_limit, storing nothing, above the user's plan."""
    from functions.agent import plans as plan_limits

    with db.transaction() as tx:
        plan = plan_limits.lock_for_rows(tx, plans, user_id) if plans is not None else None
        upload_id = str(
            tx.scalar(
                """INSERT INTO usage_uploads (user_id, format, part, rows_received, rows_inserted, rows_duplicate)
               VALUES (%s, %s, %s, %s, 0, 0) RETURNING id""",
                [user_id, fmt, part, len(rows)],
            )
        )
        inserted = insert_records(tx, user_id, upload_id, rows)
        if plan is not None and inserted:
            plan_limits.check_rows(tx, plans, user_id, plan, len(rows))
        duplicates = len(rows) - inserted
        tx.execute(
            "UPDATE usage_uploads SET rows_inserted = %s, rows_duplicate = %s WHERE id = %s",
            [inserted, duplicates, upload_id],
        )
        version = bump_version(tx, user_id) if inserted else None
    return {
        "upload_id": upload_id,
        "format": fmt,
        "part": part,
        "rows_received": len(rows),
        "rows_inserted": inserted,
        "rows_duplicate": duplicates,
        "data_version": version,
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def summary(db: Any, user_id: str) -> dict[str, Any]:
    totals = (
        db.one(
            """SELECT count(*) AS records, min(ts) AS first_ts, max(ts) AS last_ts,
                  COALESCE(sum(input_tokens), 0) AS input_tokens,
                  COALESCE(sum(cached_input_tokens), 0) AS cached_input_tokens,
                  COALESCE(sum(cache_write_tokens), 0) AS cache_write_tokens,
                  COALESCE(sum(output_tokens), 0) AS output_tokens,
                  COALESCE(sum(reasoning_tokens), 0) AS reasoning_tokens,
                  count(feature) AS with_feature, count(end_user) AS with_end_user,
                  count(prefix_hash) AS with_prefix_hash, count(prefix_tokens) AS with_prefix_tokens,
                  count(request_hash) AS with_request_hash, count(interactive) AS with_interactive,
                  count(latency_ms) AS with_latency_ms, count(max_tokens) AS with_max_tokens
             FROM usage_records WHERE user_id = %s""",
            [user_id],
        )
        or {}
    )
    models = db.all(
        """SELECT provider, model, count(*) AS records FROM usage_records WHERE user_id = %s
            GROUP BY 1, 2 ORDER BY 3 DESC, 2""",
        [user_id],
    )
    uploads = (
        db.one(
            "SELECT count(*) AS uploads, max(created_at) AS last_upload_at FROM usage_uploads WHERE user_id = %s",
            [user_id],
        )
        or {}
    )
    records = int(totals.get("records") or 0)
    coverage = {key.removeprefix("with_"): int(value) for key, value in totals.items() if key.startswith("with_")}
    return {
        "records": records,
        "first_ts": _iso(totals.get("first_ts")),
        "last_ts": _iso(totals.get("last_ts")),
        "tokens": {
            k: int(totals.get(k) or 0)
            for k in ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
        },
        "models": [{"provider": m["provider"], "model": m["model"], "records": int(m["records"])} for m in models],
        "field_coverage": coverage,
        "uploads": int(uploads.get("uploads") or 0),
        "last_upload_at": _iso(uploads.get("last_upload_at")),
        "data_version": data_version(db, user_id),
    }


def delete(db: Any, user_id: str, upload_id: str | None = None, timeout_ms: int | None = None) -> dict[str, Any]:
    """Deletes the user's records (all, or one upload's) with their precomputed analyses, in one transaction.
    ``timeout_ms``: its statement timeout, longer than a request's, since the summary triggers subtract every
    deleted record (docs/PERFORMANCE.md, "Large deletes")."""
    with db.transaction(timeout_ms) as tx:
        if upload_id:
            deleted = tx.execute(
                "DELETE FROM usage_records WHERE user_id = %s AND upload_id = %s", [user_id, upload_id]
            )
            tx.execute("DELETE FROM usage_uploads WHERE user_id = %s AND id = %s", [user_id, upload_id])
        else:
            deleted = tx.execute("DELETE FROM usage_records WHERE user_id = %s", [user_id])
            tx.execute("DELETE FROM usage_uploads WHERE user_id = %s", [user_id])
            tx.execute("DELETE FROM usage_ingest_sources WHERE user_id = %s", [user_id])
        tx.execute("DELETE FROM usage_rollups WHERE user_id = %s", [user_id])
        version = bump_version(tx, user_id)
    return {"deleted": deleted, "data_version": version}
