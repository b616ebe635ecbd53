"""Did the runs of the messages we posted complete? A 202 from POST /api/agent/message only says "queued";
a run that is never executed is a failed request from the user's point of view, so each scenario that posts
checks the runs it created and lists the unfinished ones with the cause found in the worker's log."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

REFUSAL = "delivery refused"  # functions/agent/worker/handler.py: worker busy, 429 for redelivery


def _query(database_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import pg8000.dbapi

    url = urlparse(database_url)
    conn = pg8000.dbapi.connect(
        user=url.username,
        password=url.password,
        host=url.hostname,
        port=url.port or 5432,
        database=url.path.lstrip("/"),
        timeout=5,
    )
    try:
        cursor = conn.cursor()
        cursor.execute(sql, params)
        return list(cursor.fetchall())
    finally:
        conn.close()


def database_now(database_url: str | None) -> datetime | None:
    if not database_url:
        return None
    try:
        return _query(database_url, "SELECT now()")[0][0]
    except Exception:
        return None


def unfinished_since(database_url: str | None, since: datetime | None) -> tuple[int, int]:
    """(runs created since ``since`` that are still queued or running, all runs created since)."""
    if not database_url or since is None:
        return 0, 0
    try:
        rows = _query(
            database_url,
            "SELECT count(*) FILTER (WHERE status IN ('queued', 'running')), count(*) FROM runs WHERE created_at >= %s",
            (since,),
        )
    except Exception:
        return 0, 0
    return int(rows[0][0]), int(rows[0][1])


def refusals(log_paths: list[Path]) -> int:
    count = 0
    for path in log_paths:
        try:
            count += sum(1 for line in path.read_text(errors="replace").splitlines() if REFUSAL in line)
        except OSError:
            continue
    return count


def failure(database_url: str | None, since: datetime | None, worker_logs: list[Path]) -> dict[str, Any] | None:
    """A failure row for the report when runs were left unfinished, else None."""
    unfinished, total = unfinished_since(database_url, since)
    if not unfinished:
        return None
    refused = refusals(worker_logs)
    cause = (
        f"{unfinished} of {total} runs accepted with 202 never completed (still queued/running once the "
        "backlog stopped moving)"
    )
    if refused:
        cause += (
            f"; the worker refused {refused} deliveries as busy (429, max_concurrent_runs) and the push "
            "subscription dead-lettered them after its delivery attempts ran out"
        )
    return {"target": "agent-worker", "request": "runs of posted messages", "count": unfinished, "cause": cause}
