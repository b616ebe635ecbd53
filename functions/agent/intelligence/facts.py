"""The facts one analysis run shares, from two scans of the user's records: token sums and exact cost per
segment (model, tier, feature, interactivity, status) and day - with the period and how many records carry each
optional field - and per end user (the most expensive ones). Most tools derive from these groups, so a run reads
the table twice for all of them instead of once per tool.

One GROUPING SETS scan would read the table once, but PostgreSQL sorts the whole table for one of the sets
(MixedAggregate; measured 2.7-5.3 s on a million rows against about 0.4 s per hashed, parallel scan here).
"""

from __future__ import annotations

import decimal
import logging
import threading
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal
from typing import Any

from functions.agent.intelligence.pricing_sql import (
    BIG,
    COST,
    GROUP_RATE_JOIN,
    LC,
    PROMPT,
    RATE_JOIN,
    RATES_CTE,
    Period,
    analysis_settings,
    price_of,
    rates_params,
)

log = logging.getLogger("agent.intelligence.facts")
_PREFETCH = ThreadPoolExecutor(max_workers=2, thread_name_prefix="analysis-prefetch")

COVERAGE_FIELDS = (
    "feature",
    "end_user",
    "prefix_hash",
    "prefix_tokens",
    "request_hash",
    "interactive",
    "latency_ms",
    "max_tokens",
)
TOP_USERS = 50  # end users kept by cost; the breakdown tool shows at most this many
SUMS = """count(*) AS n, sum(u.input_tokens) AS i, sum(u.cached_input_tokens) AS c, sum(u.cache_write_tokens) AS w,
          sum(u.output_tokens) AS o, sum(u.reasoning_tokens) AS rs"""
SEGMENT_KEY = ("feature", "interactive", "ok", "model", "provider", "lc", "pday")
DAY_KEY = ("day", "model", "provider", "lc", "pday")

_SEGMENTS_BY_DAY = f"""
WITH {RATES_CTE},
g AS (SELECT u.feature, u.interactive, (u.status = 'ok') AS ok, (u.ts AT TIME ZONE 'UTC')::date AS day, u.model,
             u.provider, {LC} AS lc, r.pday, {SUMS},
             max(u.input_tokens + u.cached_input_tokens + u.cache_write_tokens) AS max_prompt,
             max(u.output_tokens) AS max_output, COALESCE(sum(u.max_tokens), 0) AS sum_max_tokens,
             min(u.ts) AS first_ts, max(u.ts) AS last_ts,
             {", ".join(f"count(u.{f}) AS has_{f}" for f in COVERAGE_FIELDS)}
        FROM usage_records u LEFT JOIN rates r ON {RATE_JOIN}
       WHERE u.user_id = %s
       GROUP BY 1, 2, 3, 4, 5, 6, 7, 8)
SELECT g.*, {COST} AS cost FROM g LEFT JOIN rates r ON {GROUP_RATE_JOIN}
"""
# The same rows from usage_day_segments, the summary the insert and delete triggers keep
# (shared/db/migrations/0007_usage_summary.sql): a few thousand rows instead of every record. Its big_prompt (the
# exact prompt size above SUMMARY_PROMPT_FLOOR tokens, 0 below) gives the long-context split exactly for any
# threshold at or above the floor; below it, the analysis reads the records (_SEGMENTS_BY_DAY).
SUMMARY_PROMPT_FLOOR = 100_000
_SEGMENTS_FROM_SUMMARY = f"""
WITH {RATES_CTE},
g AS (SELECT s.feature, s.interactive, s.ok, s.day, s.model, s.provider,
             (s.big_prompt > COALESCE(r.lc_above, {BIG})) AS lc, r.pday,
             sum(s.n)::bigint AS n, sum(s.i) AS i, sum(s.c) AS c, sum(s.w) AS w, sum(s.o) AS o, sum(s.rs) AS rs,
             max(s.max_prompt) AS max_prompt, max(s.max_output) AS max_output,
             sum(s.sum_max_tokens)::bigint AS sum_max_tokens, min(s.first_ts) AS first_ts, max(s.last_ts) AS last_ts,
             {", ".join(f"sum(s.has_{f})::bigint AS has_{f}" for f in COVERAGE_FIELDS)}
        FROM usage_day_segments s LEFT JOIN rates r
          ON r.model = s.model AND (s.day::timestamp AT TIME ZONE 'UTC') >= r.since_ts
         AND (s.day::timestamp AT TIME ZONE 'UTC') < r.until_ts
       WHERE s.user_id = %s
       GROUP BY 1, 2, 3, 4, 5, 6, 7, 8)
SELECT g.*, {COST} AS cost FROM g LEFT JOIN rates r ON {GROUP_RATE_JOIN}
"""
_TOP_USERS = f"""
WITH {RATES_CTE},
g AS (SELECT u.end_user, u.model, {LC} AS lc, r.pday, {SUMS}
        FROM usage_records u LEFT JOIN rates r ON {RATE_JOIN}
       WHERE u.user_id = %s
       GROUP BY 1, 2, 3, 4)
SELECT g.end_user AS key, sum(g.n) AS n, sum(g.i) AS i, sum(g.c) AS c, sum(g.w) AS w, sum(g.o) AS o,
       sum(g.rs) AS rs, COALESCE(sum({COST}), 0) AS cost, count(*) OVER () AS keys
  FROM g LEFT JOIN rates r ON {GROUP_RATE_JOIN}
 GROUP BY g.end_user ORDER BY COALESCE(sum({COST}), 0) DESC, g.end_user NULLS LAST LIMIT {TOP_USERS}
"""
# The same from usage_end_user_months (per end user, model and UTC month): exact when every month is priced in
# one price period (MONTHS_IN_ONE_PERIOD), as is usual; else the records are read (_TOP_USERS).
_MONTH_TS = "(s.month::timestamp AT TIME ZONE 'UTC')"
MONTHS_IN_ONE_PERIOD = f"""
WITH {RATES_CTE}
SELECT NOT EXISTS (SELECT 1 FROM usage_end_user_months s JOIN rates r ON r.model = s.model
                    WHERE s.user_id = %s AND r.since_ts > {_MONTH_TS}
                      AND r.since_ts < {_MONTH_TS} + interval '1 month')
"""
_TOP_USERS_FROM_SUMMARY = f"""
WITH {RATES_CTE},
g AS (SELECT s.end_user, s.model, (s.big_prompt > COALESCE(r.lc_above, {BIG})) AS lc, r.pday,
             sum(s.n)::bigint AS n, sum(s.i) AS i, sum(s.c) AS c, sum(s.w) AS w, sum(s.o) AS o, sum(s.rs) AS rs
        FROM usage_end_user_months s LEFT JOIN rates r
          ON r.model = s.model AND {_MONTH_TS} >= r.since_ts AND {_MONTH_TS} < r.until_ts
       WHERE s.user_id = %s
       GROUP BY 1, 2, 3, 4)
SELECT g.end_user AS key, sum(g.n) AS n, sum(g.i) AS i, sum(g.c) AS c, sum(g.w) AS w, sum(g.o) AS o,
       sum(g.rs) AS rs, COALESCE(sum({COST}), 0) AS cost, count(*) OVER () AS keys
  FROM g LEFT JOIN rates r ON {GROUP_RATE_JOIN}
 GROUP BY g.end_user ORDER BY COALESCE(sum({COST}), 0) DESC, g.end_user NULLS LAST LIMIT {TOP_USERS}
"""
_SUMMED = ("n", "i", "c", "w", "o", "rs", "sum_max_tokens", *(f"has_{f}" for f in COVERAGE_FIELDS))


def _rollup(rows: list[dict[str, Any]], key: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows summed over the columns not in ``key`` (cost stays None for a model the catalog does not price)."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        k = tuple(row[c] for c in key)
        acc = out.get(k)
        if acc is None:
            out[k] = {
                **{c: row[c] for c in key},
                **{c: int(row[c]) for c in _SUMMED},
                "cost": row["cost"],
                "max_prompt": int(row["max_prompt"]),
                "max_output": int(row["max_output"]),
                "first_ts": row["first_ts"],
                "last_ts": row["last_ts"],
            }
            continue
        for c in _SUMMED:
            acc[c] += int(row[c])
        if acc["cost"] is not None:
            acc["cost"] = Decimal(acc["cost"]) + Decimal(row["cost"])
        acc["max_prompt"] = max(acc["max_prompt"], int(row["max_prompt"]))
        acc["max_output"] = max(acc["max_output"], int(row["max_output"]))
        acc["first_ts"] = min(acc["first_ts"], row["first_ts"])
        acc["last_ts"] = max(acc["last_ts"], row["last_ts"])
    return list(out.values())


@dataclass
class Agg:
    """Sums over groups: requests, the five token buckets and cost (None-priced groups add tokens only)."""

    n: int = 0
    i: int = 0
    c: int = 0
    w: int = 0
    o: int = 0
    rs: int = 0
    cost: Decimal = field(default_factory=Decimal)
    unpriced: int = 0

    def add(self, row: dict[str, Any]) -> Agg:
        self.n += int(row["n"])
        self.i += int(row["i"])
        self.c += int(row["c"])
        self.w += int(row["w"])
        self.o += int(row["o"])
        self.rs += int(row["rs"])
        if row.get("cost") is None:
            self.unpriced += int(row["n"])
        else:
            self.cost += Decimal(row["cost"])
        return self

    @property
    def input_all(self) -> int:
        return self.i + self.c + self.w

    @property
    def output_all(self) -> int:
        return self.o + self.rs

    def tokens(self) -> dict[str, int]:
        return {
            "input_tokens": self.i,
            "cached_input_tokens": self.c,
            "cache_write_tokens": self.w,
            "output_tokens": self.o,
            "reasoning_tokens": self.rs,
        }


def group(rows: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], Hashable]) -> dict[Any, Agg]:
    out: dict[Any, Agg] = {}
    for row in rows:
        out.setdefault(key(row), Agg()).add(row)
    return out


class Facts:
    """Lazily computed, memoised facts of one user's data for one run (or one rollup job pass)."""

    def __init__(self, db: Any, user_id: str, use_summaries: bool = True) -> None:
        self.db = db
        self.user_id = user_id
        # False: every fact from the records themselves (the summaries' reference in tests and benchmarks).
        self.use_summaries = use_summaries
        self._scanned = False
        self._segments: list[dict[str, Any]] = []
        self._days: list[dict[str, Any]] = []
        self._users: list[dict[str, Any]] = []
        self._coverage: dict[str, int] = {}
        self._period = Period(0, None, None)
        self._repeats: list[dict[str, Any]] | None = None
        self._dups: tuple[str, str, str] | None = None
        self._cache_rows: dict[int, list[dict[str, Any]]] = {}
        self._prefetch: Future[None] | None = None
        self._prefetch_ttl: int | None = None
        self._cache_halves: dict[int, list[dict[str, Any]]] = {}
        self._repeats_lock = threading.Lock()  # computed once, by whichever connection gets to them first
        self._dups_ready = threading.Event()

    def prefetch_cache_rows(self, ttl_minutes: int) -> None:
        """Start the heaviest work of a full analysis (duplicate groups, then half of the prompt-cache windows)
        on a second pooled connection while the caller runs the others: PostgreSQL runs the two on two cores;
        the caller computes the other half when it needs them (cache_rows). Used only where the pool has room
        for it; any failure leaves the work to the caller."""
        if self._prefetch is not None or getattr(self.db, "size", 1) < 2:
            return

        def work() -> None:
            try:
                dup_groups(self, prefetching=True)
            finally:
                self._dups_ready.set()
            self._cache_halves[ttl_minutes] = _cache_part(self, ttl_minutes, 0, 2, prefetching=True)
            if self._repeats_lock.acquire(blocking=False):  # the caller has not started them: take them too
                try:
                    repeats(self, locked=True, prefetching=True)
                finally:
                    self._repeats_lock.release()

        self._prefetch_ttl = ttl_minutes
        self._prefetch = _PREFETCH.submit(work)

    def wait_prefetch(self) -> None:
        future, self._prefetch = self._prefetch, None
        if future is not None:
            try:
                future.result()
            except Exception:  # noqa: BLE001 - the caller computes what the prefetch did not
                log.warning("analysis prefetch failed; computing inline", exc_info=True)

    def summaries_exact(self) -> bool:
        """Whether the summaries give the records' figures: every long-context threshold of the price data is at
        or above the prompt size from which the summary keeps exact prompt sizes."""
        return self.use_summaries and all(t >= SUMMARY_PROMPT_FLOOR for t in rates_params()[4])

    def _scan(self) -> None:
        if self._scanned:
            return
        with self.db.transaction() as tx:
            analysis_settings(tx)
            by_day = tx.all(
                _SEGMENTS_FROM_SUMMARY if self.summaries_exact() else _SEGMENTS_BY_DAY,
                [*rates_params(), self.user_id],
            )
            monthly = self.summaries_exact() and tx.scalar(MONTHS_IN_ONE_PERIOD, [*rates_params(), self.user_id])
            self._users = tx.all(_TOP_USERS_FROM_SUMMARY if monthly else _TOP_USERS, [*rates_params(), self.user_id])
        self._segments = _rollup(by_day, SEGMENT_KEY)
        self._days = [{**r, "day": r["day"].isoformat()} for r in _rollup(by_day, DAY_KEY)]
        self._coverage = {f: sum(r[f"has_{f}"] for r in self._segments) for f in COVERAGE_FIELDS}
        if self._segments:
            first = min(r["first_ts"] for r in self._segments).astimezone(UTC)
            last = max(r["last_ts"] for r in self._segments).astimezone(UTC)
            self._period = Period(sum(r["n"] for r in self._segments), first, last)
        self._scanned = True

    @property
    def period(self) -> Period:
        self._scan()
        return self._period

    @property
    def segments(self) -> list[dict[str, Any]]:
        """Per (feature, interactive, ok, model, provider, lc): n, token sums, max_prompt, max_output, cost."""
        self._scan()
        return self._segments

    @property
    def days(self) -> list[dict[str, Any]]:
        """Per (day, model, provider, lc), day as YYYY-MM-DD in UTC."""
        self._scan()
        return self._days

    @property
    def top_users(self) -> list[dict[str, Any]]:
        """The TOP_USERS most expensive end users (key None: records without one), with ``keys`` = all users."""
        self._scan()
        return self._users

    @property
    def coverage(self) -> dict[str, int]:
        """Records carrying each optional field."""
        self._scan()
        return self._coverage

    def total(self) -> Agg:
        return group(self.segments, lambda r: None).get(None, Agg())

    def monthly(self, amount: Decimal) -> Decimal:
        return self.period.monthly(amount)

    def priced_models(self) -> dict[str, Any]:
        return {r["model"]: price_of(r["model"], r["pday"]) for r in self.segments}


# -- inputs of prompt caching and of the savings plan ------------------------------------------------------------
# Prefix tokens of a request not already read from or written to a cache (they are billed as uncached input).
CACHEABLE = "LEAST(GREATEST(u.prefix_tokens - u.cached_input_tokens - u.cache_write_tokens, 0), u.input_tokens)"
# Exact duplicates: a response cache answers (n - 1) of every n identical requests (same model, request_hash).
# The groups are read once per run (dup_groups: from usage_repeated_requests, kept at upload time; from the records
# without the summaries, an index-only scan streaming (model, request_hash) in order) and handed to the queries
# that need them as arrays: one pass instead of one aggregation per query.
DUPLICATE_GROUPS_SQL = """SELECT u.model, u.request_hash, count(*) AS n FROM usage_records u
                           WHERE u.user_id = %s AND u.request_hash IS NOT NULL
                           GROUP BY 1, 2 HAVING count(*) > 1"""
# The same groups as kept at upload time (the view of shared/db/migrations/0012_usage_request_counts.sql).
DUPLICATE_GROUPS_STORED = "SELECT model, request_hash, n FROM usage_repeated_requests WHERE user_id = %s"
DUPLICATE_GROUPS = "d AS (SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS d(model, request_hash, n))"
# The rates are MATERIALIZED where the records come from index lookups (a nested loop): else the unnest that
# builds them runs again for every record (measured: 5 of the 7.7 s of this query on a million records).
RATES_MATERIALIZED = RATES_CTE.replace("rates AS (", "rates AS MATERIALIZED (", 1)
# Only the price rows of the models that have repeated requests (after DUPLICATE_GROUPS, whose parameters then
# come first): the nested loop tries every price row for each of the repeated records (44 rows x 50,000 records
# on the benchmark, where 2 models repeat).
RATES_OF_REPEATED = RATES_MATERIALIZED[:-1] + " WHERE r.model IN (SELECT d.model FROM d))"
_REPEATS = f"""
WITH {DUPLICATE_GROUPS}, {RATES_OF_REPEATED}
SELECT u.model, u.feature, u.interactive, {LC} AS lc, r.pday, sum((d.n - 1)::numeric / d.n) AS n,
       {
    ", ".join(
        f"sum(u.{c} * (d.n - 1)::numeric / d.n) AS {a}"
        for c, a in (
            ("input_tokens", "i"),
            ("cached_input_tokens", "c"),
            ("cache_write_tokens", "w"),
            ("output_tokens", "o"),
            ("reasoning_tokens", "rs"),
        )
    )
}
  FROM d JOIN usage_records u ON u.user_id = %s AND u.model = d.model AND u.request_hash = d.request_hash
  LEFT JOIN rates r ON {RATE_JOIN}
 GROUP BY 1, 2, 3, 4, 5
"""
# Requests with a prefix in fixed windows of the cache lifetime, per segment (model, feature, interactive,
# long-context tier, price period) and prefix (prefix_hash, prefix_tokens): the first request of a window writes
# the prefix, the others read it. Per (segment, prefix): the cacheable tokens and the tokens written (a window's
# cacheable tokens / its requests), for all requests and for those a response cache keeps (weight 1/n for each
# of n identical requests; numeric only for those few). A window is counted per segment: two features sharing a
# prefix in the same window each pay a write (conservative; it keeps this one hashed aggregation, where windows
# across segments needed a sort of every prefixed record: 10x slower on a million). No model limit applies
# here: the savings plan checks the minimum cacheable prefix of the model the traffic ends on.
#
# Cost (docs/PERFORMANCE.md, 2026-12-02 evening): a million records make ~630k windows of ~1 request. The
# response-cache sums are FILTERed to the repeated requests, so the ~99 % of windows without one carry no numeric
# aggregate state; and windows are counted by their (requests, tokens) pair before dividing, so the numeric
# divisions run once per distinct pair instead of once per window: count x (s / n) is exactly the sum of the
# count equal quotients (numeric multiplication by an integer keeps the quotient's digits). A window holding a
# repeated request keeps its own row (kwin), so its exact weights are never merged with another's.
# The last three parameters select the windows numbered part modulo parts: with a prefetch, the two pooled
# connections each compute half of the windows (two cores) and the halves are added exactly (_merged).
_SUMS_OF_WINDOWS = """
SELECT model, feature, interactive, lc, pday, prefix_hash, prefix_tokens, sum(cnt * n) AS requests,
       sum(cnt)::bigint AS windows, sum(cnt * s) AS s, sum(cnt * (s::numeric / n)) AS writes,
       sum(cnt * (n - COALESCE(rn, 0))) AS requests_kept, sum(cnt * (s - COALESCE(rs, 0))) AS s_kept,
       sum(cnt * ((s - COALESCE(rs, 0)) / (n - COALESCE(rn, 0)))) AS writes_kept
  FROM y GROUP BY 1, 2, 3, 4, 5, 6, 7
"""
_WINDOW_SUMS = f"""
y AS (SELECT model, feature, interactive, lc, pday, prefix_hash, prefix_tokens, n, s,
             CASE WHEN rn IS NOT NULL THEN win END AS kwin, count(*) AS cnt, min(rn) AS rn, min(rs) AS rs
        FROM w GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
{_SUMS_OF_WINDOWS}"""


def _weights(n: str) -> str:
    """rn, rs of a window: the requests and cacheable tokens a response cache answers, for ``n`` the size of a
    record's group of identical requests (NULL: not repeated)."""
    return (
        f"sum(({n} - 1)::numeric / {n}) FILTER (WHERE {n} IS NOT NULL) AS rn, "
        f"sum({CACHEABLE} * ({n} - 1)::numeric / {n}) FILTER (WHERE {n} IS NOT NULL) AS rs"
    )


_CACHE_ROWS = f"""
WITH {RATES_CTE}, {DUPLICATE_GROUPS},
w AS (SELECT u.model, u.feature, u.interactive, {LC} AS lc, r.pday, u.prefix_hash, u.prefix_tokens,
             floor(date_part('epoch', u.ts) / %s) AS win, count(*) AS n, sum({CACHEABLE}) AS s,
             {_weights("d.n")}
        FROM usage_records u LEFT JOIN rates r ON {RATE_JOIN}
        LEFT JOIN d ON d.model = u.model AND d.request_hash = u.request_hash
       WHERE u.user_id = %s AND u.prefix_hash IS NOT NULL AND u.prefix_tokens IS NOT NULL
         AND abs(floor(date_part('epoch', u.ts) / %s)::bigint %% %s) = %s
       GROUP BY 1, 2, 3, 4, 5, 6, 7, 8),
{_WINDOW_SUMS}"""
# The same rows from usage_prefix_windows (shared/db/migrations/0009_usage_prefix_windows.sql: per segment without
# tier, prefix and 5-minute window, the requests and cacheable tokens, kept at upload time), for the 5-minute
# lifetime. A stored window is final unless it holds a repeated request or a prompt above the summaries' floor:
# x reads those records (index lookups: the duplicate groups' index, a partial index on big prompts), and each
# window they touch takes its long-context part (lc) out as a window of its own and its response-cache weights
# from them. The 630k windows of a million records are then read, not hashed out of 700k records per run.
WINDOW_SECONDS = 300  # the stored windows' width
_X_COLUMNS = (
    "u.model, u.feature, u.interactive, u.prefix_hash, u.prefix_tokens, u.ts, u.input_tokens, u.cached_input_tokens, "
    "u.cache_write_tokens"
)
_WIN_OF_TS = f"floor(date_part('epoch', u.ts) / {WINDOW_SECONDS})::bigint"
_CACHE_FROM_WINDOWS = f"""
WITH {RATES_CTE}, {DUPLICATE_GROUPS},
x0 AS (SELECT {_X_COLUMNS}, d.n AS dn
         FROM d JOIN usage_records u ON u.user_id = %s AND u.model = d.model AND u.request_hash = d.request_hash
        WHERE u.prefix_hash IS NOT NULL AND u.prefix_tokens IS NOT NULL
       UNION ALL
       SELECT {_X_COLUMNS}, NULL
         FROM usage_records u LEFT JOIN d ON d.model = u.model AND d.request_hash = u.request_hash
        WHERE u.user_id = %s AND u.prefix_hash IS NOT NULL AND u.prefix_tokens IS NOT NULL
          AND {PROMPT} > {SUMMARY_PROMPT_FLOOR} AND d.n IS NULL),
xr AS MATERIALIZED (SELECT * FROM rates r WHERE r.model IN (SELECT u.model FROM x0 u)),
x AS (SELECT * FROM (
        SELECT u.model, u.feature, u.interactive, {LC} AS lc, r.pday, u.prefix_hash, u.prefix_tokens,
               {_WIN_OF_TS} AS win, count(*) AS n, sum({CACHEABLE}) AS s,
               {_weights("u.dn")}
          FROM x0 u LEFT JOIN xr r ON {RATE_JOIN}
         GROUP BY 1, 2, 3, 4, 5, 6, 7, 8) x
       WHERE abs(x.win %% %s) = %s),
k AS (SELECT model, feature, interactive, prefix_hash, prefix_tokens, win,
             (sum(n) FILTER (WHERE lc))::bigint AS nt, (sum(s) FILTER (WHERE lc))::bigint AS st,
             sum(rn) FILTER (WHERE NOT lc) AS rn, sum(rs) FILTER (WHERE NOT lc) AS rs
        FROM x GROUP BY 1, 2, 3, 4, 5, 6),
w AS (SELECT t.model, t.feature, t.interactive, t.prefix_hash, t.prefix_tokens, t.win,
             floor(t.win::float8 / {86400 // WINDOW_SECONDS})::bigint AS day, t.n - COALESCE(k.nt, 0) AS n,
             t.s - COALESCE(k.st, 0) AS s, k.rn, k.rs
        FROM usage_prefix_windows t
        LEFT JOIN k ON k.model = t.model AND k.prefix_hash = t.prefix_hash AND k.prefix_tokens = t.prefix_tokens
             AND k.win = t.win AND k.feature IS NOT DISTINCT FROM t.feature
             AND k.interactive IS NOT DISTINCT FROM t.interactive
       WHERE t.user_id = %s AND abs(t.win %% %s) = %s AND t.n > COALESCE(k.nt, 0)),
-- Windows counted per day and (requests, tokens) before the price period is looked up (periods start at UTC
-- midnight): a few thousand rows take the rates join instead of every window.
yd AS (SELECT model, feature, interactive, prefix_hash, prefix_tokens, day, n, s,
              CASE WHEN rn IS NOT NULL THEN win END AS kwin, count(*) AS cnt, min(rn) AS rn, min(rs) AS rs
         FROM w GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9),
y AS (SELECT yd.model, yd.feature, yd.interactive, false AS lc, r.pday, yd.prefix_hash, yd.prefix_tokens, yd.n,
             yd.s, yd.cnt, yd.rn, yd.rs
        FROM yd LEFT JOIN rates r ON r.model = yd.model AND to_timestamp(yd.day * 86400) >= r.since_ts
             AND to_timestamp(yd.day * 86400) < r.until_ts
      UNION ALL
      SELECT model, feature, interactive, lc, pday, prefix_hash, prefix_tokens, n, s, 1, rn, rs FROM x WHERE lc)
{_SUMS_OF_WINDOWS}"""


def _array_literal(values: Iterable[str]) -> str:
    """A PostgreSQL text[] literal, every element quoted. Hand-written because pg8000 escapes a list element by
    element on every execute: the duplicate groups (thousands of hashes) go to three queries a run, so they are
    encoded once (measured 0.46 s of a million-record run through pg8000)."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def dup_groups(facts: Facts, prefetching: bool = False) -> tuple[str, str, str]:
    """The (model, request_hash, n) groups of identical requests, as three array literals (query parameters
    for DUPLICATE_GROUPS)."""
    if not prefetching and facts._prefetch is not None:
        facts._dups_ready.wait()  # the prefetch finds them first (then the cache windows)
    if facts._dups is None:
        with facts.db.transaction() as tx:
            analysis_settings(tx, hash_aggregate=False)  # stream the index's order; hashing ~1M groups is slower
            rows = tx.all(DUPLICATE_GROUPS_STORED if facts.use_summaries else DUPLICATE_GROUPS_SQL, [facts.user_id])
        facts._dups = (
            _array_literal(r["model"] for r in rows),
            _array_literal(r["request_hash"] for r in rows),
            "{" + ",".join(str(int(r["n"])) for r in rows) + "}",
        )
    return facts._dups


def repeats(facts: Facts, locked: bool = False, prefetching: bool = False) -> list[dict[str, Any]]:
    """Per (model, feature, interactive, lc): the requests and token sums a response cache would answer."""
    if facts._repeats is None:
        if not locked:
            with facts._repeats_lock:  # the prefetch may be computing them: wait for its result
                return repeats(facts, locked=True)
        facts._repeats = facts_query(facts, _REPEATS, [*dup_groups(facts, prefetching), *rates_params(), facts.user_id])
    return facts._repeats


def _cache_part(
    facts: Facts, ttl_minutes: int, part: int, parts: int, prefetching: bool = False
) -> list[dict[str, Any]]:
    window = ttl_minutes * 60
    head = [*rates_params(), *dup_groups(facts, prefetching)]
    if window == WINDOW_SECONDS and facts.summaries_exact():
        user = facts.user_id
        return facts_query(facts, _CACHE_FROM_WINDOWS, [*head, user, user, parts, part, user, parts, part])
    return facts_query(facts, _CACHE_ROWS, [*head, window, facts.user_id, window, parts, part])


_CACHE_KEY = ("model", "feature", "interactive", "lc", "pday", "prefix_hash", "prefix_tokens")
# Exact: far more digits than any sum of token counts and quotients here; an inexact sum raises instead.
_EXACT = decimal.Context(prec=1000, traps=[decimal.Inexact, decimal.Rounded])


def _merged(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of two disjoint sets of windows added per (segment, prefix): what one query over both returns.
    Decimal addition keeps the larger scale, as PostgreSQL's numeric sum does, so the digits are the same."""
    rows = {tuple(r[k] for k in _CACHE_KEY): dict(r) for r in first}
    with decimal.localcontext(_EXACT):
        for r in second:
            acc = rows.get(tuple(r[k] for k in _CACHE_KEY))
            if acc is None:
                rows[tuple(r[k] for k in _CACHE_KEY)] = dict(r)
                continue
            for k, v in r.items():
                if k not in _CACHE_KEY:
                    acc[k] = acc[k] + v
    return list(rows.values())


def cache_rows(facts: Facts, ttl_minutes: int) -> list[dict[str, Any]]:
    """Per (model, feature, interactive, lc, prefix_hash, prefix_tokens): requests, cache windows, cacheable
    tokens and tokens written, for all requests and for those a response cache keeps (see _CACHE_ROWS)."""
    if ttl_minutes in facts._cache_rows:
        return facts._cache_rows[ttl_minutes]
    if facts._prefetch is not None and facts._prefetch_ttl == ttl_minutes:
        # This connection takes the other half of the windows; the savings plan's repeats are then computed
        # by whichever connection finishes its half first (the two finish closer together).
        second = _cache_part(facts, ttl_minutes, 1, 2)
        if facts._repeats_lock.acquire(blocking=False):  # the prefetch has not started them: take them
            try:
                repeats(facts, locked=True)
            finally:
                facts._repeats_lock.release()
        facts.wait_prefetch()
        first = facts._cache_halves.pop(ttl_minutes, None)
        if first is None:  # the prefetch failed (logged)
            first = _cache_part(facts, ttl_minutes, 0, 2)
        facts._cache_rows[ttl_minutes] = _merged(first, second)
    else:
        facts._cache_rows[ttl_minutes] = _cache_part(facts, ttl_minutes, 0, 1)
    return facts._cache_rows[ttl_minutes]


def facts_query(facts: Facts, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    with facts.db.transaction() as tx:
        analysis_settings(tx)
        return tx.all(sql, params)
