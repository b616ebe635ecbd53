"""The prompt-cache windows (functions/agent/intelligence/facts.py, _CACHE_ROWS) count windows by their
(requests, tokens) pair before dividing and keep the response-cache weights of repeated requests apart. They
must give, digit for digit (numeric scale included), what the plain formulation gives: one numeric division per
window, the weights summed in every window. That formulation is kept here as the reference."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.agent.intelligence.facts import CACHEABLE, DUPLICATE_GROUPS, Facts, cache_rows, dup_groups, facts_query
from functions.agent.intelligence.pricing_sql import LC, RATE_JOIN, RATES_CTE, rates_params
from tests.intelligence import datasets
from tests.intelligence.conftest import make_user

REFERENCE = f"""
WITH {RATES_CTE}, {DUPLICATE_GROUPS},
w AS (SELECT u.model, u.feature, u.interactive, {LC} AS lc, r.pday, u.prefix_hash, u.prefix_tokens,
             count(*) AS n, sum({CACHEABLE}) AS s,
             COALESCE(sum((d.n - 1)::numeric / d.n), 0) AS rn,
             COALESCE(sum({CACHEABLE} * (d.n - 1)::numeric / d.n), 0) AS rs
        FROM usage_records u LEFT JOIN rates r ON {RATE_JOIN}
        LEFT JOIN d ON d.model = u.model AND d.request_hash = u.request_hash
       WHERE u.user_id = %s AND u.prefix_hash IS NOT NULL AND u.prefix_tokens IS NOT NULL
       GROUP BY 1, 2, 3, 4, 5, 6, 7, floor(date_part('epoch', u.ts) / %s))
SELECT model, feature, interactive, lc, pday, prefix_hash, prefix_tokens, sum(n) AS requests, count(*) AS windows,
       sum(s) AS s, sum(s::numeric / n) AS writes, sum(n - rn) AS requests_kept, sum(s - rs) AS s_kept,
       sum((s - rs) / (n - rn)) AS writes_kept
  FROM w GROUP BY 1, 2, 3, 4, 5, 6, 7
"""


def _traffic(seed: int) -> list[dict[str, Any]]:
    """Two hours of prefixed traffic on two cached models: windows of one to several requests, prefixes partly
    read from a cache already (so a window's tokens vary), features and interactivity sometimes unknown,
    identical requests (2-4 copies) spread over windows that hold other requests too, and prompts above the
    summaries' 100,000-token floor, under and over the long-context threshold (200,000 on claude-sonnet-4-5),
    some of them repeated. A fifth of the traffic runs on a model whose price changes on 2026-01-05, across
    that midnight, so that windows on either side take different price periods."""
    rng = random.Random(seed)
    start = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
    rows = []
    for k in range(360):
        model = rng.choice(["claude-sonnet-4-5", "gpt-4o"])
        prefix = rng.choice([("sys-a", 2048), ("sys-b", 1536), ("sys-c", 4096)])
        extra: dict[str, Any] = {
            "provider": "anthropic" if model.startswith("claude") else "openai",
            "prefix_hash": prefix[0],
            "prefix_tokens": prefix[1],
            "cached_input_tokens": rng.choice([0, 0, 0, 512, 1024]),
            "request_hash": f"r-{k}",
        }
        if rng.random() < 0.8:
            extra["feature"] = rng.choice(["chat", "search"])
        if rng.random() < 0.8:
            extra["interactive"] = rng.random() < 0.6
        if k % 9 == 0:
            extra["request_hash"] = f"dup-{k % 4}"  # the same four requests again and again, across windows
        prompt = 5_000
        if model.startswith("claude") and k % 7 == 0:
            prompt = rng.choice([150_000, 250_000])
        ts = start + timedelta(seconds=rng.randrange(0, 7200))
        if k % 5 == 1:
            model, extra["provider"] = "gemini-3-pro-preview", "google"
            ts = datetime(2026, 1, 4, 23, 0, tzinfo=UTC) + timedelta(seconds=rng.randrange(0, 7200))
        rows.append(datasets.row(f"w-{k}", ts.isoformat().replace("+00:00", "Z"), model, prompt, 50, **extra))
    return rows


def _strings(rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return sorted(tuple(f"{k}={v}" for k, v in r.items()) for r in rows)


@pytest.mark.parametrize("seed", [1, 2])
def test_cache_windows_equal_the_per_window_formulation(intel_db: Any, seed: int) -> None:
    user = make_user(intel_db)
    datasets.load(intel_db, user, _traffic(seed))
    facts = Facts(intel_db, user)
    assert dup_groups(facts)[2] != "{}", "the dataset must hold identical requests"
    for ttl in (1, 5, 7):
        rows = cache_rows(facts, ttl)
        reference = facts_query(facts, REFERENCE, [*rates_params(), *dup_groups(facts), user, ttl * 60])
        assert any(int(r["requests"]) > int(r["windows"]) for r in rows), "some windows must hold several requests"
        assert any(r["requests_kept"] != r["requests"] for r in rows), "some windows must hold repeated requests"
        assert any(r["lc"] for r in rows), "some windows must be in the long-context tier"
        assert len({r["pday"] for r in rows if r["model"] == "gemini-3-pro-preview"}) == 2, "two price periods"
        assert _strings(rows) == _strings(reference), f"ttl {ttl} min"
        # As a full analysis runs it: half of the windows on the prefetch's connection, half on the caller's,
        # added in Python.
        halves = Facts(intel_db, user)
        halves.prefetch_cache_rows(ttl)
        assert halves._prefetch is not None, "the pool has room for the prefetch"
        assert _strings(cache_rows(halves, ttl)) == _strings(reference), f"ttl {ttl} min, two halves"
    # The 5-minute rows come from the windows kept at upload time (usage_prefix_windows), the others from the
    # records: without the stored windows only the long-context windows (read from the records) are left.
    intel_db.execute("DELETE FROM usage_prefix_windows WHERE user_id = %s", [user])
    assert {bool(r["lc"]) for r in cache_rows(Facts(intel_db, user), 5)} == {True}
    assert _strings(cache_rows(Facts(intel_db, user), 7)) == _strings(
        facts_query(facts, REFERENCE, [*rates_params(), *dup_groups(facts), user, 7 * 60])
    )
