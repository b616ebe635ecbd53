"""Heavy analysis as a Cloud Run job: precompute every analysis tool for users whose usage data changed since
the last pass and store the results in ``usage_rollups``; the tools serve them while the data version holds.

    python -m functions.agent.rollup_job                 # every user with stale or missing rollups
    python -m functions.agent.rollup_job --user UUID     # one user, recomputed even when fresh
    python -m functions.agent.rollup_job --limit 50      # at most 50 users this pass

Reads DATABASE_URL (or CLOUD_SQL_INSTANCE and friends) like every service. Exit code 0 when every user was
processed, 1 when some failed (each failure is logged with the user id), 2 on a configuration error.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

from pydantic import Field

from functions.agent.intelligence.toolbox import FULL_ANALYSIS, Toolbox
from shared.config import CommonSection, ConfigError, DatabaseSection, load_settings

log = logging.getLogger("rollup-job")


class RollupSettings(CommonSection, DatabaseSection):
    """The rollup job's settings: the database, plus how long one analysis statement may run."""

    rollup_statement_timeout_ms: int = Field(
        300_000, ge=1000, description="statement timeout of the analysis queries in ms, e.g. 300000"
    )


def stale_users(db: Any, limit: int) -> list[str]:
    """Users whose data version has no complete set of rollups yet, most recently changed first."""
    rows = db.all(
        """SELECT s.user_id FROM usage_state s
            WHERE (SELECT count(*) FROM usage_rollups r
                    WHERE r.user_id = s.user_id AND r.data_version = s.version) < %s
            ORDER BY s.updated_at DESC LIMIT %s""",
        [len(FULL_ANALYSIS), limit],
    )
    return [str(r["user_id"]) for r in rows]


def rollup_user(db: Any, user_id: str) -> dict[str, Any]:
    toolbox = Toolbox(db, user_id, use_rollups=False)
    started = time.perf_counter()
    timings = {}
    toolbox.prefetch(FULL_ANALYSIS)
    for name, args in FULL_ANALYSIS:
        _, elapsed_ms = toolbox.compute_and_store(name, args)
        key = f"{name}:{args['by']}" if "by" in args else name
        timings[key] = round(elapsed_ms, 1)
    return {
        "user_id": user_id,
        "data_version": toolbox.data_version,
        "records": toolbox.facts.period.records,
        "total_ms": round((time.perf_counter() - started) * 1000, 1),
        "tools_ms": timings,
    }


ROLLUP_LOCK_KEY = 7_270_101  # with hashtext(user id): one refresh of a user at a time, across instances


def refresh_user(db: Any, user_id: str, at_least: int) -> dict[str, Any] | None:
    """Recompute one user's rollups unless another refresh of that user is running or a refresh already covered
    version ``at_least`` (a redelivered or overtaken request); the summary when computed, else None. Used by the
    agent worker for the refresh requests of live ingestion (functions/agent/ingest)."""
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", [ROLLUP_LOCK_KEY, user_id])
        locked = bool(cursor.fetchone()[0])
        conn.commit()
        if not locked:
            return None
        try:
            covered = db.scalar(
                "SELECT count(*) FROM usage_rollups WHERE user_id = %s AND data_version >= %s", [user_id, at_least]
            )
            if int(covered) >= len(FULL_ANALYSIS):
                return None
            return rollup_user(db, user_id)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", [ROLLUP_LOCK_KEY, user_id])
            conn.commit()


def main(argv: list[str] | None = None) -> int:
    from shared.db.database import Database
    from shared.logging import configure_logging

    parser = argparse.ArgumentParser(prog="python -m functions.agent.rollup_job", description=__doc__.split("\n")[0])
    parser.add_argument("--user", help="one user id (recomputed even when fresh)")
    parser.add_argument("--limit", type=int, default=100, help="most users per pass, default 100")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(RollupSettings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging("rollup-job", settings.log_level, settings.log_format, settings.google_cloud_project)
    # The socket's read timeout follows the statement timeout (shared/db/connect.py), so raising it is enough.
    settings = settings.model_copy(
        update={"db_statement_timeout_ms": settings.rollup_statement_timeout_ms, "db_pool_size": 1}
    )
    db = Database(settings, "netra-rollup-job")
    failed = 0
    try:
        users = [args.user] if args.user else stale_users(db, args.limit)
        for user_id in users:
            try:
                summary = rollup_user(db, user_id)
            except Exception as exc:
                failed += 1
                log.error("rollup failed", extra={"user_id": user_id, "reason": f"{type(exc).__name__}: {exc}"})
                continue
            log.info("rollup written", extra=summary)
            print(f"user {user_id}: {summary['records']} records, {summary['total_ms']} ms")
        print(f"done: {len(users) - failed} user(s) rolled up, {failed} failed")
    finally:
        db.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
