"""The usage summaries (shared/db/migrations/0007_usage_summary.sql, kept by triggers in the transaction that
writes the records) give every analysis tool the figures it computes from the records themselves: across
several uploads, a re-sent upload (duplicates skipped), records without latency, long-context prompts, an
unpriced model, and after deleting one upload."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from functions.agent.intelligence.facts import Facts
from functions.agent.intelligence.toolbox import FULL_ANALYSIS, Toolbox
from functions.agent.usage import store
from functions.agent.usage.schema import build_row
from tests.intelligence import datasets
from tests.intelligence.conftest import make_user


def _both(db: Any, user: str) -> tuple[dict[str, Any], dict[str, Any]]:
    summarised = Toolbox(db, user, use_rollups=False)
    records = Toolbox(db, user, use_rollups=False)
    records.facts = Facts(db, user, use_summaries=False)
    assert summarised.facts.summaries_exact()
    return (
        {f"{n}:{sorted(a.items())}": summarised.call(n, a) for n, a in FULL_ANALYSIS},
        {f"{n}:{sorted(a.items())}": records.call(n, a) for n, a in FULL_ANALYSIS},
    )


def test_summaries_give_the_records_figures_through_uploads_and_deletes(intel_db: Any) -> None:
    user = make_user(intel_db)
    rows = datasets.dataset_a()
    first = datasets.load(intel_db, user, rows[:20])
    datasets.load(intel_db, user, rows[15:])  # rows 15-19 again: skipped, counted once
    datasets.load(intel_db, user, datasets.dataset_b())
    datasets.load(
        intel_db,
        user,
        [datasets.row("lc-extra", "2025-03-02T15:30:00Z", "gemini-2.5-pro", 180_000, 10, feature="rag")],
    )
    summarised, records = _both(intel_db, user)
    assert summarised["usage_overview:[]"]["records"] == len(rows) + 5 + 1
    assert summarised["long_context:[]"]["long_context_requests"] == 2
    assert summarised == records

    # Deleting an upload re-sums the days it touched (a maximum or a first call cannot be subtracted).
    store.delete(intel_db, user, first["upload_id"])
    summarised, records = _both(intel_db, user)
    assert summarised["usage_overview:[]"]["records"] == len(rows) - 20 + 5 + 1
    assert summarised == records
    _assert_summaries_match_records(intel_db, user, ("usage_repeated_requests", "usage_request_counts"))

    store.delete(intel_db, user)
    assert intel_db.scalar("SELECT count(*) FROM usage_day_segments WHERE user_id = %s", [user]) == 0
    assert intel_db.scalar("SELECT count(*) FROM usage_latency_counts WHERE user_id = %s", [user]) == 0
    assert intel_db.scalar("SELECT count(*) FROM usage_prefix_windows WHERE user_id = %s", [user]) == 0
    assert intel_db.scalar("SELECT count(*) FROM usage_repeated_requests WHERE user_id = %s", [user]) == 0
    assert intel_db.scalar("SELECT count(*) FROM usage_request_counts WHERE user_id = %s", [user]) == 0
    assert intel_db.scalar("SELECT count(*) FROM usage_end_user_months WHERE user_id = %s", [user]) == 0
    assert intel_db.scalar("SELECT count(*) FROM usage_request_counts WHERE user_id = %s", [user]) == 0


def test_records_are_not_updated_in_place(intel_db: Any) -> None:
    user = make_user(intel_db)
    datasets.load(intel_db, user, datasets.dataset_b())
    with pytest.raises(Exception, match="not updated in place"):
        intel_db.execute("UPDATE usage_records SET output_tokens = 0 WHERE user_id = %s", [user])


_SUMMARY_CHECKS = {
    # Each summary table against the same aggregate taken from the records (what the migration's backfill does).
    "usage_day_segments": (
        "SELECT day, model, feature, n, i, o, max_prompt, first_ts, last_ts FROM usage_day_segments"
        " WHERE user_id = %s ORDER BY 1, 2, 3",
        "SELECT (ts AT TIME ZONE 'UTC')::date AS day, model, feature, count(*) AS n, sum(input_tokens)::bigint AS i,"
        " sum(output_tokens)::bigint AS o, max(input_tokens) AS max_prompt, min(ts) AS first_ts, max(ts) AS last_ts"
        " FROM usage_records WHERE user_id = %s GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    ),
    "usage_latency_counts": (
        "SELECT model, latency_ms, n FROM usage_latency_counts WHERE user_id = %s ORDER BY 1, 2",
        "SELECT model, latency_ms, count(*) AS n FROM usage_records WHERE user_id = %s GROUP BY 1, 2 ORDER BY 1, 2",
    ),
    "usage_end_user_months": (
        "SELECT end_user, model, sum(n)::bigint AS n, sum(i)::bigint AS i, sum(o)::bigint AS o"
        " FROM usage_end_user_months WHERE user_id = %s GROUP BY 1, 2 ORDER BY 1, 2",  # months summed
        "SELECT end_user, model, count(*) AS n, sum(input_tokens)::bigint AS i, sum(output_tokens)::bigint AS o"
        " FROM usage_records"
        " WHERE user_id = %s GROUP BY 1, 2 ORDER BY 1, 2",
    ),
    "usage_prefix_windows": (
        "SELECT model, feature, prefix_hash, win, n, s FROM usage_prefix_windows WHERE user_id = %s"
        " ORDER BY 1, 2, 3, 4",
        "SELECT model, feature, prefix_hash, floor(date_part('epoch', ts) / 300)::bigint AS win, count(*) AS n,"
        " sum(LEAST(GREATEST(prefix_tokens - cached_input_tokens - cache_write_tokens, 0), input_tokens))::bigint"
        " AS s FROM usage_records WHERE user_id = %s AND prefix_hash IS NOT NULL AND prefix_tokens IS NOT NULL"
        " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
    ),
    "usage_repeated_requests": (
        "SELECT model, request_hash, n FROM usage_repeated_requests WHERE user_id = %s ORDER BY 1, 2",
        "SELECT model, request_hash, count(*) AS n FROM usage_records WHERE user_id = %s AND request_hash IS NOT NULL"
        " GROUP BY 1, 2 HAVING count(*) > 1 ORDER BY 1, 2",
    ),
    "usage_request_counts": (
        "SELECT model, request_hash, n FROM usage_request_counts WHERE user_id = %s ORDER BY 1, 2",
        "SELECT model, request_hash, count(*) AS n FROM usage_records WHERE user_id = %s AND request_hash IS NOT NULL"
        " GROUP BY 1, 2 ORDER BY 1, 2",
    ),
}


def _assert_summaries_match_records(db: Any, user: str, tables: tuple[str, ...] = tuple(_SUMMARY_CHECKS)) -> None:
    """The checks are written for rows with one provider and status per (day, model, feature)."""
    for table in tables:
        stored, expected = _SUMMARY_CHECKS[table]
        want = [list(r.values()) for r in db.all(expected, [user])]
        assert want, f"{table}: the records must give it rows"
        assert [list(r.values()) for r in db.all(stored, [user])] == want, table


def _records(prefix: str, day: int, model: str, end_user: str, latency: int) -> list[Any]:
    return [
        build_row(
            datasets.row(
                f"{prefix}-{k}",
                f"2025-03-0{day}T10:0{k}:00Z",
                model,
                1_000 + k,
                100,
                provider="openai",
                feature="chat",
                end_user=end_user,
                latency_ms=latency,
                prefix_hash="sys-prompt",
                prefix_tokens=512,
                request_hash=f"q-{day}-{k}",  # the same requests in both transactions: repeats across them
            )
        )
        for k in range(3)
    ]


def _wait_for_lock_wait(db: Any, pid: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if db.scalar("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid]) == "Lock":
            return
        time.sleep(0.02)
    raise AssertionError(f"backend {pid} never waited on a lock")


def test_concurrent_uploads_of_one_account_keep_the_summaries_exact(intel_db: Any) -> None:
    """Two transactions of one account on two real connections (an upload beside a live-ingestion batch), each
    inserting two statements that touch disjoint summary rows X (day 1, gpt-4o) and Y (day 2, gpt-4o-mini), in
    crossed orders: A writes X; B writes Y then X; A writes Y. Without the triggers' per-account advisory lock,
    B waits on A's X rows while A waits on B's Y rows: PostgreSQL aborts one with a deadlock (40P01) and that
    upload is lost. With it, B waits at its first statement until A commits; both commit and every summary row
    equals the records' aggregate."""
    user = make_user(intel_db)
    x_a, y_a = _records("a-x", 1, "gpt-4o", "alice", 700), _records("a-y", 2, "gpt-4o-mini", "bob", 300)
    y_b, x_b = _records("b-y", 2, "gpt-4o-mini", "bob", 300), _records("b-x", 1, "gpt-4o", "alice", 700)
    pid_b: list[int] = []
    errors: list[BaseException] = []
    b_started = threading.Event()

    def transaction_b() -> None:
        try:
            with intel_db.transaction() as tx:
                pid_b.append(int(tx.scalar("SELECT pg_backend_pid()")))
                b_started.set()
                store.insert_records(tx, user, None, y_b)
                store.insert_records(tx, user, None, x_b)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            b_started.set()

    with intel_db.transaction() as tx_a:
        store.insert_records(tx_a, user, None, x_a)
        b = threading.Thread(target=transaction_b)
        b.start()
        assert b_started.wait(20) and pid_b, errors
        # With the lock B waits at Y (the account's lock); without it B writes Y and waits at X (A's rows).
        _wait_for_lock_wait(intel_db, pid_b[0])
        try:
            store.insert_records(tx_a, user, None, y_a)
        except BaseException as exc:  # noqa: BLE001 - a deadlock here is what the lock prevents
            errors.append(exc)
            raise
        finally:
            if errors:
                b.join(30)
    b.join(30)
    assert not b.is_alive()
    assert errors == []
    assert intel_db.scalar("SELECT count(*) FROM usage_records WHERE user_id = %s", [user]) == 12
    _assert_summaries_match_records(intel_db, user)


# 3,000 records of 1,500 requests ('rq-<g % 1500>'): every request twice in the one statement.
_BATCH_SQL = """
INSERT INTO usage_records (user_id, request_id, ts, provider, model, input_tokens, cached_input_tokens,
                           cache_write_tokens, output_tokens, status, request_hash)
SELECT %s::uuid, %s || g, timestamptz '2025-03-01 00:00:00+00' + make_interval(secs => g), 'openai', 'gpt-4o',
       100, 0, 0, 10, 'ok', 'rq-' || (g %% 1500)
  FROM generate_series(1, 3000) AS g
"""


_IN_FLIGHT_SQL = """
INSERT INTO usage_records (user_id, request_id, ts, provider, model, input_tokens, cached_input_tokens,
                           cache_write_tokens, output_tokens, status, request_hash)
SELECT %s::uuid, 'big-' || g, timestamptz '2025-03-01 00:00:00+00' + make_interval(secs => g), 'openai', 'gpt-4o',
       100, 0, 0, 10, 'ok', 'big-' || g
  FROM generate_series(1, %s) AS g
"""


def _index_scans(tx: Any, index: str) -> int:
    """Scans of ``index`` counted so far in this transaction (the backend's own pending statistics)."""
    return int(tx.scalar("SELECT pg_stat_get_xact_numscans(%s::regclass)", [index]))


def test_repeated_requests_are_counted_without_reading_records_when_statistics_miss_an_upload(
    migrated_db_url: str,
) -> None:
    """An ANALYZE running while a large upload is in flight (autovacuum's, on a new deployment or a table that
    upload dominates) cannot see the uncommitted rows: it stores 0 tuples over their pages. 0010 recounted each
    request of a statement with a lookup in usage_user_model_request_all; planned on those statistics the lookup
    became a scan of usage_user_ts (every record of the account, per request), and a 5M-row upload never
    finished. Here a 1M-row transaction is in flight (its own triggers off: its rows only take space), a second
    session analyses the table, and another account uploads 3,000 records that repeat 1,500 requests: no index
    of the records is scanned for that upload (0012 keeps every request's count by upsert), and its repeated
    groups are exact."""
    from shared.config import DatabaseSection
    from shared.db.database import Database

    def database(name: str) -> Database:
        return Database(DatabaseSection.model_validate({"database_url": migrated_db_url, "db_pool_size": 1}), name)

    in_flight, uploader = database("in-flight"), database("uploader")
    indexes = ("usage_user_ts", "usage_user_model_request_all")
    try:
        other, user = make_user(in_flight), make_user(in_flight)
        with in_flight.transaction() as big:
            big.execute("SET LOCAL session_replication_role = replica")  # no triggers: its rows only take space
            big.execute("SET LOCAL statement_timeout = '300s'")  # 1M rows: ~10 s here, over 15 s on a busy machine
            big.execute(_IN_FLIGHT_SQL, [other, 1_000_000])
            with uploader.connection() as conn:
                conn.autocommit = True
                conn.cursor().execute("ANALYZE usage_records")
                conn.autocommit = False
            assert uploader.scalar("SELECT reltuples FROM pg_class WHERE relname = 'usage_records'") == 0
            with uploader.transaction() as tx:
                before = [_index_scans(tx, index) for index in indexes]
                tx.execute(_BATCH_SQL, [user, "mine-"])
                scans = [_index_scans(tx, index) - b for index, b in zip(indexes, before, strict=True)]
        assert scans == [0, 0]
        assert uploader.all(
            "SELECT count(*) AS groups, min(n) AS low, max(n) AS high FROM usage_repeated_requests WHERE user_id = %s",
            [user],
        ) == [{"groups": 1500, "low": 2, "high": 2}]
    finally:
        in_flight.close()
        uploader.close()


_WIDE_SQL = """
INSERT INTO usage_records (user_id, request_id, ts, provider, model, input_tokens, cached_input_tokens,
                           cache_write_tokens, output_tokens, status, feature, end_user, latency_ms, prefix_hash,
                           prefix_tokens, request_hash)
SELECT %s::uuid, 'wide-' || g, timestamptz '2025-03-01 00:00:00+00' + make_interval(secs => g * 300), 'openai',
       'gpt-4o', 2000, 0, 0, 10, 'ok', NULL, 'eu-' || (g %% 500), g %% 2000, 'px', 1024, 'rq-' || g
  FROM generate_series(1, 40000) AS g
"""


def _tuples_read(tx: Any, table: str) -> int:
    """Rows of ``table`` and its indexes read so far in this transaction (sequential and index fetches)."""
    return int(
        tx.scalar(
            "SELECT pg_stat_get_xact_tuples_returned(%s::regclass) + pg_stat_get_xact_tuples_fetched(%s::regclass)",
            [table, table],
        )
    )


def test_a_large_delete_reads_each_summary_row_a_bounded_number_of_times(intel_db: Any) -> None:
    """Deleting half of an upload interleaved in time with the other half (every other record) must cost in
    proportion to what it removes. 0007 and 0009 subtracted with UPDATE ... FROM joins whose nullable keys
    (feature here is NULL) were compared with IS NOT DISTINCT FROM, which no hash or merge join takes as a key:
    every deleted window of a (user, model) was compared with all its windows, and 0012 deleted its zeros with a
    nested loop over the whole index. Deleting 500,000 of a million records had not finished after 13 minutes
    (docs/PERFORMANCE.md). Here 40,000 records, one 5-minute window each, analysed, then half deleted: each
    summary table is read at most a few times its whole size. Before the fix 0012's delete of the zeros ran into
    the statement timeout; 0007's and 0009's joins picked a sound plan at this size, so their guard is
    `make bench` (the delete line of bench_analysis)."""
    user = make_user(intel_db)
    intel_db.execute(_WIDE_SQL, [user])
    with intel_db.connection() as conn:
        conn.autocommit = True
        conn.cursor().execute("ANALYZE")
        conn.autocommit = False
    tables = ("usage_prefix_windows", "usage_request_counts", "usage_latency_counts", "usage_end_user_months")
    # Whole tables: the zero-row sweeps may scan every account's rows (the module's database is shared).
    sizes = {t: intel_db.scalar(f"SELECT count(*) FROM {t}") for t in tables}  # noqa: S608 - fixed names
    with intel_db.transaction() as tx:
        before = {t: _tuples_read(tx, t) for t in tables}
        deleted = tx.execute(
            "DELETE FROM usage_records WHERE user_id = %s AND right(request_id, 1) IN ('0', '2', '4', '6', '8')",
            [user],
        )
        read = {t: _tuples_read(tx, t) - before[t] for t in tables}
    assert deleted == 20000
    assert all(read[t] <= 3 * sizes[t] for t in tables), (sizes, read)
    _assert_summaries_match_records(intel_db, user, tuple(t for t in _SUMMARY_CHECKS if t != "usage_repeated_requests"))
