"""Analysis of 1,000,000 usage records of one user, end to end: every analysis tool, the ranking, the what-if,
the action plans and the markdown report (the whole optimization pipeline with the mock model), live from the
records and then from the rollups the rollup job writes.

    python -m tests.bench.bench_analysis            # BENCH_ANALYSIS_ROWS=1000000 by default
    BENCH=analysis ANALYSIS_ROWS=5000000 python -m tests.bench   # the same at 5M (ANALYSIS_RUNS=1: one run each)

The load goes through the summary triggers (shared/db/migrations/0007, 0009, 0010 and 0012), as an upload does; the
load is also timed without them (same rows, triggers disabled, then the table emptied) to show what they cost.
"Live" is the analysis from the records and their summaries; "records only" reads every fact from the records
(Facts(use_summaries=False)), the path before the summaries; "rollups" serves precomputed results.

An embedded PostgreSQL is started in a temporary directory (or BENCH_DATABASE_URL is used, which must name a
database that does not exist yet). For iterating on the queries, ANALYSIS_KEEP_DIR=/some/dir keeps the server's
data there: the first run loads the rows as usual, later runs with the same ANALYSIS_ROWS reuse them (pending
migrations are applied; the load figures are then not printed), and ANALYSIS_QUICK=1 runs the live tools only
(no records-only path, pipeline, rollups, plan notes or delete; ANALYSIS_DELETE=1 adds the delete). Rows are
generated in SQL (generate_series, hashint4 for deterministic "randomness"), so loading costs what PostgreSQL
needs to write them and their indexes.
Figures are printed; nothing is asserted.
The plan notes (EXPLAIN ANALYZE) of the heavy queries are printed after the timings.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROWS = int(os.environ.get("ANALYSIS_ROWS") or os.environ.get("BENCH_ANALYSIS_ROWS") or "1000000")
RUNS = int(os.environ.get("ANALYSIS_RUNS", "3" if ROWS <= 1_000_000 else "1"))
KEEP_DIR = os.environ.get("ANALYSIS_KEEP_DIR", "")
QUICK = os.environ.get("ANALYSIS_QUICK", "") not in ("", "0")
SUMMARY_TABLES = (
    "usage_day_segments",
    "usage_end_user_months",
    "usage_latency_counts",
    "usage_prefix_windows",
    "usage_request_counts",
)
USER = "00000000-0000-4000-8000-00000000be9c"

# 30 days of traffic; 8 models, 6 features, 5,000 end users, 4 shared prefixes per model (1,024-4,096 tokens,
# on 70 % of requests), 5 % exact repeats,
# 1 % of gemini-2.5-pro requests above 200k prompt tokens, 70 % interactive, 1 % failures.
LOAD_SQL = """
INSERT INTO usage_records (user_id, request_id, ts, provider, model, input_tokens, cached_input_tokens,
                           cache_write_tokens, output_tokens, reasoning_tokens, latency_ms, status, feature, end_user,
                           prefix_hash, prefix_tokens, request_hash, max_tokens, interactive)
SELECT %s::uuid, 'bench-' || g,
       timestamptz '2025-10-01 00:00:00+00' + make_interval(secs => (g::float8 * 2592000 / %s)),
       (ARRAY['openai','openai','anthropic','anthropic','google','google','openai','groq'])[1 + m],
       (ARRAY['gpt-4o','gpt-4o-mini','claude-sonnet-4-5','claude-haiku-4-5','gemini-2.5-pro','gemini-2.5-flash',
              'gpt-5','llama-3.3-70b-versatile'])[1 + m],
       CASE WHEN m = 4 AND (h1 & 127) = 0 THEN 210000 + (h2 & 65535)
            ELSE 400 + (h1 & 8191) + CASE WHEN g %% 10 < 7 THEN 1024 + ((g / 8) %% 4) * 1024 ELSE 0 END END,
       CASE WHEN m = 6 AND (h2 & 3) = 0 THEN 1024 ELSE 0 END,
       0,
       CASE WHEN f = 1 THEN 1 + (h2 & 7) ELSE 20 + (h2 & 1023) END,
       CASE WHEN m = 6 THEN 100 + (h3 & 2047) ELSE 0 END,
       200 + (h3 & 4095),
       CASE WHEN (h3 & 127) = 0 THEN 'error' ELSE 'ok' END,
       (ARRAY['chat','classify','summarize','search','code','extract'])[1 + f],
       'user-' || (h2 %% 5000 + 5000) %% 5000,
       CASE WHEN g %% 10 < 7 THEN 'prefix-' || m || '-' || ((g / 8) %% 4) END,
       CASE WHEN g %% 10 < 7 THEN 1024 + ((g / 8) %% 4) * 1024 END,
       'req-' || CASE WHEN g %% 20 = 0 THEN ((g / 20) %% 2000)::text ELSE g::text END,
       CASE WHEN f = 1 THEN 16 ELSE 2048 END,
       f NOT IN (2, 5)
  FROM (SELECT g, g %% 8 AS m, (g / 8) %% 6 AS f, hashint4(g) AS h1, hashint4(g + 1000003) AS h2,
               hashint4(g + 2000003) AS h3
          FROM generate_series(1, %s) AS g) AS s
"""

BASELINE_SQL = """
SELECT count(*), sum(input_tokens), sum(cached_input_tokens), sum(cache_write_tokens), sum(output_tokens),
       sum(reasoning_tokens) FROM usage_records WHERE user_id = %s
"""


def _planned() -> dict[str, tuple[str, bool]]:
    """The heavy statements (the facts scans as the tools run them; equivalents of the others): sql, hash_aggregate."""
    from functions.agent.intelligence import facts
    from functions.agent.intelligence import pricing_sql as ps

    return {
        "baseline COUNT/SUM scan": (BASELINE_SQL, True),
        "segments by day (most tools)": (facts._SEGMENTS_BY_DAY, True),
        "top end users": (facts._TOP_USERS, True),
        "exact duplicates": (
            """
            SELECT count(*) FROM (SELECT model, request_hash, count(*), sum(input_tokens), sum(output_tokens)
                                    FROM usage_records WHERE user_id = %s AND request_hash IS NOT NULL
                                   GROUP BY 1, 2 HAVING count(*) > 1) d""",
            False,
        ),
        "prompt caching windows": (
            f"""
            WITH {ps.RATES_CTE}
            SELECT count(*) FROM (SELECT u.model, u.prefix_hash, floor(date_part('epoch', u.ts) / 300), count(*)
                                    FROM usage_records u JOIN rates r ON {ps.RATE_JOIN}
                                   WHERE u.user_id = %s AND u.prefix_hash IS NOT NULL AND r.has_cache
                                   GROUP BY 1, 2, 3) w""",
            True,
        ),
        "latency percentiles": (
            """
            SELECT model, percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)
              FROM usage_records WHERE user_id = %s GROUP BY model""",
            True,
        ),
    }


def _database() -> tuple[str, Any]:
    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        return url, None
    from emulators.postgres import EmbeddedPostgres

    server = EmbeddedPostgres(Path(KEEP_DIR or tempfile.mkdtemp(prefix="bench-analysis-"))).start()
    return server.url_for("bench_analysis"), server


def _loaded_rows(url: str) -> int:
    """Rows of the bench user already in a kept database (0 when it is new)."""
    import pg8000.dbapi

    from shared.db.connect import parse_database_url

    t = parse_database_url(url)
    try:
        conn = pg8000.dbapi.connect(user=t.user, password=t.password, host=t.host, port=t.port, database=t.database)
    except Exception:  # the database does not exist yet
        return 0
    try:
        cur = conn.cursor()
        cur.execute("SELECT to_regclass('public.usage_records') IS NOT NULL")
        if not cur.fetchone()[0]:
            return 0
        cur.execute("SELECT count(*) FROM usage_records WHERE user_id = %s", [USER])
        return int(cur.fetchone()[0])
    finally:
        conn.close()


def _plan_notes(db: Any) -> dict[str, list[str]]:
    from functions.agent.intelligence import pricing_sql as ps

    notes = {}
    for name, (sql, hash_aggregate) in _planned().items():
        params = [*ps.rates_params(), USER] if "rates" in sql else [USER]
        with db.transaction() as tx:
            ps.analysis_settings(tx, hash_aggregate)
            rows = tx.all("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) " + sql, params)
        lines = [r["QUERY PLAN"] for r in rows]
        keep = [
            line.strip()[:160]
            for line in lines
            if any(
                k in line
                for k in (
                    "Scan",
                    "Aggregate",
                    "Sort",
                    "Gather",
                    "Workers Launched",
                    "Execution Time",
                    "Heap Fetches",
                    "Batches",
                    "Disk",
                )
            )
        ]
        notes[name] = keep[:10]
    return notes


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"


def _analysis_runs(
    db: Any, runs: int, use_summaries: bool, use_rollups: bool = False
) -> tuple[list[float], dict[str, list[float]]]:
    """Every tool of a full analysis, ``runs`` times, each on fresh facts (nothing memoised between runs), with
    the prompt-cache windows prefetched on a second connection as the pipeline does."""
    from functions.agent.intelligence.facts import Facts
    from functions.agent.intelligence.toolbox import FULL_ANALYSIS, Toolbox

    totals, tool_ms = [], {}
    for _ in range(runs):
        toolbox = Toolbox(db, USER, use_rollups=use_rollups)
        toolbox.facts = Facts(db, USER, use_summaries=use_summaries)
        started = time.perf_counter()
        toolbox.prefetch(FULL_ANALYSIS)
        for name, args in FULL_ANALYSIS:
            t0 = time.perf_counter()
            toolbox.call(name, args)
            key = f"{name}:{args['by']}" if "by" in args else name
            tool_ms.setdefault(key, []).append((time.perf_counter() - t0) * 1000)
        totals.append(time.perf_counter() - started)
    return totals, tool_ms


# Half the records, every other one: an upload deleted while another one, interleaved with it in time, stays
# (DELETE /api/usage?upload_id=...). Through the summary triggers, and without them as the same-run baseline;
# both rolled back, so the figures after it are measured on the same rows.
DELETE_SQL = "DELETE FROM usage_records WHERE user_id = %s AND right(request_id, 1) IN ('0', '2', '4', '6', '8')"


def _delete_half(db: Any) -> dict[str, float]:
    timings: dict[str, float] = {}
    for label in ("without_triggers", "with_triggers"):
        with db.connection() as conn:
            cur = conn.cursor()
            if label == "without_triggers":
                cur.execute("ALTER TABLE usage_records DISABLE TRIGGER USER")
            started = time.perf_counter()
            cur.execute(DELETE_SQL, [USER])
            timings[label] = time.perf_counter() - started
            timings["rows"] = cur.rowcount
            conn.rollback()
    with db.connection() as conn:  # the whole account (a user deleting all their data): rolled back too
        cur = conn.cursor()
        started = time.perf_counter()
        cur.execute("DELETE FROM usage_records WHERE user_id = %s", [USER])
        timings["all_with_triggers"] = time.perf_counter() - started
        conn.rollback()
    print(
        f"delete of every other record ({timings['rows']:,} rows, rolled back): {timings['with_triggers']:.1f}s "
        f"with the summary triggers, {timings['without_triggers']:.1f}s without "
        f"({timings['with_triggers'] / timings['without_triggers']:.1f} x); of all of them "
        f"{timings['all_with_triggers']:.1f}s with the triggers",
        flush=True,
    )
    return timings


def _run_pipeline(db: Any, message: str) -> tuple[float, Any]:
    from functions.agent.intelligence.pipeline import run
    from tests.intelligence.harness import TestRunContext

    ctx = TestRunContext(db, USER, message)
    started = time.perf_counter()
    answer = run(ctx)
    return time.perf_counter() - started, (ctx, answer)


def main() -> None:
    from functions.agent.intelligence.toolbox import FULL_ANALYSIS
    from functions.agent.rollup_job import rollup_user
    from shared.config import DatabaseSection
    from shared.db.connect import Connector
    from shared.db.database import Database
    from shared.db.migrate import MigrateSettings, migrate

    url, server = _database()
    load_before = _loadavg()
    try:
        reuse = bool(KEEP_DIR) and _loaded_rows(url) == ROWS
        if KEEP_DIR and not reuse and server is not None:
            server.drop_database("bench_analysis")
        connector = Connector(MigrateSettings.model_validate({"database_url": url}))
        migrate(connector)
        connector.close()
        # The load and the plans take longer than a request may: a long statement timeout (the socket's read
        # timeout follows it, shared/db/connect.py).
        db = Database(
            DatabaseSection.model_validate(
                {"database_url": url, "db_statement_timeout_ms": 7_200_000, "db_pool_size": 2}
            ),
            "bench",
        )
        if reuse:
            print(f"reusing the {ROWS:,} rows kept in {KEEP_DIR}; load average now: {_loadavg()}")
            load_s = plain_load_s = vacuum_s = 0.0
        else:
            db.execute("INSERT INTO users (id, email) VALUES (%s, %s)", [USER, f"bench-{uuid.uuid4().hex[:6]}@x.test"])
            started = time.perf_counter()
            with db.transaction() as tx:
                tx.execute("ALTER TABLE usage_records DISABLE TRIGGER USER")  # every summary trigger
                tx.execute(LOAD_SQL, [USER, ROWS, ROWS])
                tx.execute("ALTER TABLE usage_records ENABLE TRIGGER USER")
            plain_load_s = time.perf_counter() - started
            with db.connection() as conn:  # the same rows again, this time through the triggers
                conn.autocommit = True
                conn.cursor().execute("TRUNCATE usage_records")
                conn.cursor().execute("VACUUM usage_records")
                conn.autocommit = False
            started = time.perf_counter()
            db.execute(LOAD_SQL, [USER, ROWS, ROWS])
            db.execute("INSERT INTO usage_state (user_id, version) VALUES (%s, 1)", [USER])
            load_s = time.perf_counter() - started
            with db.connection() as conn:  # VACUUM cannot run in a transaction block
                conn.autocommit = True
                started = time.perf_counter()
                conn.cursor().execute("VACUUM ANALYZE usage_records")
                conn.autocommit = False
            vacuum_s = time.perf_counter() - started
            print(f"load average before the load: {load_before}; now: {_loadavg()}")
            print(
                f"loaded {ROWS:,} rows in {load_s:.1f}s with the summary triggers, {plain_load_s:.1f}s without "
                f"(+{(load_s / plain_load_s - 1) * 100:.0f}% upload time); VACUUM ANALYZE {vacuum_s:.1f}s",
                flush=True,
            )
        sizes = {
            t: db.scalar("SELECT pg_total_relation_size(%s::regclass)", [t]) for t in ("usage_records", *SUMMARY_TABLES)
        }
        summary_rows = {t: db.scalar(f"SELECT count(*) FROM {t}") for t in SUMMARY_TABLES}  # noqa: S608 - fixed names
        summary_bytes = sum(sizes[t] for t in SUMMARY_TABLES)
        print(
            f"storage: records {sizes['usage_records'] / 2**20:.0f} MiB with indexes; summaries "
            f"{summary_bytes / 2**20:.1f} MiB (+{summary_bytes / sizes['usage_records'] * 100:.1f}%): "
            + ", ".join(f"{t} {summary_rows[t]:,} rows {sizes[t] / 2**20:.1f} MiB" for t in SUMMARY_TABLES)
        )

        # Baseline, same run and table: one plain scan summing the token columns of the user's records (what any
        # analysis must at least read). The tools' time is reported as a ratio of it.
        baseline = []
        for _ in range(3):
            started = time.perf_counter()
            db.one(BASELINE_SQL, [USER])
            baseline.append(time.perf_counter() - started)
        baseline_s = statistics.median(baseline)
        print(
            f"baseline, one COUNT/SUM scan of the user's records: {', '.join(f'{t:.2f}s' for t in baseline)} "
            f"(median {baseline_s:.2f}s)"
        )

        totals, tool_ms = _analysis_runs(db, RUNS, use_summaries=True)
        live_s = statistics.median(totals)
        print(f"\nall {len(FULL_ANALYSIS)} analysis tools, live from the records and their summaries ({RUNS} runs):")
        print(
            f"  total: {', '.join(f'{t:.2f}s' for t in totals)}  (median {live_s:.2f}s, "
            f"{live_s / baseline_s:.1f} x the baseline scan of {baseline_s:.2f}s; load average {_loadavg()})"
        )
        for key, values in tool_ms.items():
            print(f"  {key:28s} median {statistics.median(values):8.1f} ms")
        if QUICK:
            if os.environ.get("ANALYSIS_DELETE"):
                _delete_half(db)
            print(
                json.dumps(
                    {
                        "rows": ROWS,
                        "baseline_scan_median_s": round(baseline_s, 2),
                        "tools_live_median_s": round(live_s, 2),
                        "tools_over_baseline": round(live_s / baseline_s, 1),
                        "loadavg": _loadavg(),
                    }
                )
            )
            db.close()
            return
        records_totals, records_ms = _analysis_runs(db, 1, use_summaries=False)
        print(
            f"the same from the records only (no summaries, 1 run): {records_totals[0]:.2f}s "
            f"({records_totals[0] / baseline_s:.1f} x the baseline); "
            + ", ".join(f"{k} {v[0]:.0f} ms" for k, v in records_ms.items() if v[0] >= 100)
        )

        pipeline = [_run_pipeline(db, "How can we cut our LLM costs?") for _ in range(RUNS)]
        ctx, answer = pipeline[-1][1]
        print(
            f"\nfull pipeline, live (triage .. report, {len(ctx.tool_results)} tool calls, "
            f"{len(answer.content):,} chars of report): " + ", ".join(f"{p[0]:.2f}s" for p in pipeline)
        )

        started = time.perf_counter()
        summary = rollup_user(db, USER)
        rollup_s = time.perf_counter() - started
        rolled = [_run_pipeline(db, "How can we cut our LLM costs?")[0] for _ in range(RUNS)]
        rolled_tools, _ = _analysis_runs(db, RUNS, use_summaries=True, use_rollups=True)
        print(
            f"rollup job for this user: {rollup_s:.2f}s; from the rollups: all tools "
            + ", ".join(f"{t:.3f}s" for t in rolled_tools)
            + "; pipeline "
            + ", ".join(f"{t:.2f}s" for t in rolled)
        )

        print("\nplan notes (EXPLAIN ANALYZE with the tools' planner settings):")
        for name, lines in _plan_notes(db).items():
            print(f"  {name}:")
            for line in lines:
                print(f"    {line}")
        deleted = _delete_half(db)  # last: the rolled-back delete leaves dead row versions behind
        recs = answer.metadata["report"]["recommendations"]
        print(
            "\n"
            + json.dumps(
                {
                    "rows": ROWS,
                    "vacuum_s": round(vacuum_s, 1),
                    "load_with_summaries_s": round(load_s, 1),
                    "load_without_summaries_s": round(plain_load_s, 1),
                    "records_mib": round(sizes["usage_records"] / 2**20),
                    "summaries_mib": round(summary_bytes / 2**20, 1),
                    "baseline_scan_median_s": round(baseline_s, 2),
                    "tools_live_median_s": round(live_s, 2),
                    "tools_over_baseline": round(live_s / baseline_s, 1),
                    "tools_records_only_s": round(records_totals[0], 2),
                    "tools_rollups_s": round(statistics.median(rolled_tools), 3),
                    "loadavg": _loadavg(),
                    "pipeline_live_s": [round(p[0], 2) for p in pipeline],
                    "rollup_job_s": round(rollup_s, 2),
                    "pipeline_rollups_s": [round(t, 2) for t in rolled],
                    "recommendations": len(recs),
                    "rollup_records": summary["records"],
                    "delete_half_s": round(deleted["with_triggers"], 1),
                    "delete_half_without_triggers_s": round(deleted["without_triggers"], 1),
                    "delete_all_s": round(deleted["all_with_triggers"], 1),
                }
            )
        )
        db.close()
    finally:
        if server is not None and KEEP_DIR:
            server.stop()
        elif server is not None:
            server.destroy()


if __name__ == "__main__":
    main()
