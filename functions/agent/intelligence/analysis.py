"""Descriptive tools: overview and data coverage, cost breakdown, cost drivers, latency percentiles.

Every money figure is exact in SQL/Decimal and rounded half up to the cent only in the result; every
"monthly" figure is the period figure x 30 / period days (Period.monthly).
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from functions.agent.intelligence.facts import COVERAGE_FIELDS, Agg, Facts, group
from functions.agent.intelligence.pricing_sql import (
    TOKEN_COLUMNS,
    bucket_costs,
    pct,
    price_of,
    query,
    rates_for_group,
    usd,
)
from shared.pricing.source import current_snapshot

BREAKDOWN_DIMENSIONS = ("model", "feature", "end_user", "day", "provider")
NONE_KEY = "(none)"


def usage_overview(facts: Facts) -> dict[str, Any]:
    """Volume, period, total and monthly cost, models, and how many records carry each optional field."""
    period = facts.period
    if period.records == 0:
        return {
            **period.describe(),
            "total_cost_usd": 0.0,
            "monthly_cost_usd": 0.0,
            "models": [],
            "unpriced_models": [],
            "unpriced_records": 0,
            "prices": current_snapshot().describe(),
            "coverage_pct": {f: 0.0 for f in COVERAGE_FIELDS},
        }
    counts = facts.coverage
    total = facts.total()
    by_model = group(facts.segments, lambda r: (r["provider"], r["model"]))
    models = [
        {
            "model": model,
            "provider": provider,
            "requests": agg.n,
            "cost_usd": usd(agg.cost),
            "monthly_cost_usd": usd(facts.monthly(agg.cost)),
            "priced": price_of(model) is not None,
        }
        for (provider, model), agg in sorted(by_model.items(), key=lambda kv: (-kv[1].cost, kv[0][1]))
    ]
    failed = sum(int(r["n"]) for r in facts.segments if not r["ok"])
    return {
        **period.describe(),
        "failed_requests": failed,
        "total_cost_usd": usd(total.cost),
        "monthly_cost_usd": usd(facts.monthly(total.cost)),
        "models": models,
        "unpriced_models": [m["model"] for m in models if not m["priced"]],
        "unpriced_records": sum(m["requests"] for m in models if not m["priced"]),
        # The price data that priced this result: a rollup keeps the snapshot it was computed with.
        "prices": current_snapshot().describe(),
        "coverage_pct": {f: pct(counts.get(f, 0), period.records) for f in COVERAGE_FIELDS},
    }


def _rows(aggs: dict[Any, Agg], facts: Facts, total: Decimal, limit: int) -> tuple[list[dict[str, Any]], Agg]:
    ordered = sorted(aggs.items(), key=lambda kv: (-kv[1].cost, str(kv[0])))
    rows = [_row(key, agg, facts, total) for key, agg in ordered[:limit]]
    other = Agg()
    for _, agg in ordered[limit:]:
        other.n += agg.n
        other.i, other.c, other.w, other.o, other.rs = (
            other.i + agg.i,
            other.c + agg.c,
            other.w + agg.w,
            other.o + agg.o,
            other.rs + agg.rs,
        )
        other.cost += agg.cost
    return rows, other


def _row(key: Any, agg: Agg, facts: Facts, total: Decimal) -> dict[str, Any]:
    return {
        "key": NONE_KEY if key is None else str(key),
        "requests": agg.n,
        "input_tokens": agg.input_all,
        "output_tokens": agg.output_all,
        "cost_usd": usd(agg.cost),
        "monthly_cost_usd": usd(facts.monthly(agg.cost)),
        "share_pct": pct(agg.cost, total),
    }


def cost_breakdown(facts: Facts, by: str = "model", limit: int = 15) -> dict[str, Any]:
    """Cost per model, feature, end user, day or provider: the ``limit`` largest and the rest as "other"."""
    if by not in BREAKDOWN_DIMENSIONS:
        raise ValueError(f"by must be one of {', '.join(BREAKDOWN_DIMENSIONS)}")
    total = facts.total().cost
    if by == "end_user":
        # High cardinality: ranked and cut in SQL (Facts.top_users) rather than brought back to Python.
        top = facts.top_users[:limit]
        rows = [_row(r["key"], Agg().add(r), facts, total) for r in top]
        everyone = facts.total()
        other = Agg(
            n=everyone.n - sum(r["requests"] for r in rows),
            cost=total - sum((Decimal(r["cost"]) for r in top), Decimal(0)),
        )
        keys = int(facts.top_users[0]["keys"]) if facts.top_users else 0
    else:
        source = facts.days if by == "day" else facts.segments
        aggs = group(source, lambda r: r[by])
        rows, other = _rows(aggs, facts, total, limit)
        keys = len(aggs)
        if by == "day":
            rows.sort(key=lambda r: r["key"])
    result: dict[str, Any] = {
        "by": by,
        "keys": keys,
        "total_cost_usd": usd(total),
        "monthly_cost_usd": usd(facts.monthly(total)),
        "rows": rows,
    }
    if other.n:
        result["other"] = {
            "keys": keys - len(rows),
            "requests": other.n,
            "cost_usd": usd(other.cost),
            "share_pct": pct(other.cost, total),
        }
    return result


def cost_drivers(facts: Facts, limit: int = 5) -> dict[str, Any]:
    """Where the money goes: per token bucket, the most expensive (model, feature) segments, failed calls."""
    total = facts.total().cost
    buckets = {k: Decimal(0) for k in TOKEN_COLUMNS}
    for row in facts.segments:
        price = price_of(row["model"], row["pday"])
        if price is None:
            continue
        tokens = {k: int(row[s]) for k, s in zip(TOKEN_COLUMNS, ("i", "c", "w", "o", "rs"), strict=True)}
        for bucket, cost in bucket_costs(rates_for_group(price, row["lc"]), tokens).items():
            buckets[bucket] += cost
    token_totals = facts.total().tokens()
    by_bucket = [
        {"bucket": b, "tokens": token_totals[b], "cost_usd": usd(c), "share_pct": pct(c, total)}
        for b, c in sorted(buckets.items(), key=lambda kv: -kv[1])
    ]
    segments = group(facts.segments, lambda r: (r["model"], r["feature"]))
    top = sorted(segments.items(), key=lambda kv: (-kv[1].cost, str(kv[0])))[:limit]
    failed = group([r for r in facts.segments if not r["ok"]], lambda r: None).get(None, Agg())
    return {
        "total_cost_usd": usd(total),
        "by_bucket": by_bucket,
        "top_segments": [
            {
                "model": m,
                "feature": f or NONE_KEY,
                "requests": a.n,
                "cost_usd": usd(a.cost),
                "monthly_cost_usd": usd(facts.monthly(a.cost)),
                "share_pct": pct(a.cost, total),
                "avg_input_tokens": round(a.input_all / a.n) if a.n else 0,
                "avg_output_tokens": round(a.output_all / a.n) if a.n else 0,
            }
            for (m, f), a in top
        ],
        "failed_requests": {"requests": failed.n, "cost_usd": usd(failed.cost), "share_pct": pct(failed.cost, total)},
    }


QUANTILES = (0.5, 0.9, 0.95, 0.99)


# The two values each quantile interpolates between, found in SQL from the counts (a running sum per model), so
# a few dozen values cross the wire instead of every distinct latency (32,768 count rows through pg8000 took
# 0.7 s of a million-record analysis). first/second are percentile_cont's row positions floor/ceil(q x (n - 1)),
# in float8 as PostgreSQL computes them.
_LATENCY_FROM_COUNTS = """
WITH c AS (SELECT model, latency_ms, n, errors FROM usage_latency_counts WHERE user_id = %s AND n > 0),
t AS (SELECT model, sum(n)::bigint AS requests, sum(errors)::bigint AS errors,
             COALESCE(sum(n) FILTER (WHERE latency_ms IS NOT NULL), 0)::bigint AS measured
        FROM c GROUP BY model),
cum AS (SELECT model, latency_ms, sum(n) OVER (PARTITION BY model ORDER BY latency_ms) AS seen
          FROM c WHERE latency_ms IS NOT NULL),
k AS (SELECT t.model, q.i, floor(q.q * (t.measured - 1)::float8)::bigint AS first,
             ceil(q.q * (t.measured - 1)::float8)::bigint AS second
        FROM t, unnest(%s::float8[]) WITH ORDINALITY AS q(q, i) WHERE t.measured > 0),
p AS (SELECT k.model, k.i, min(cum.latency_ms) FILTER (WHERE cum.seen > k.first) AS lo,
             min(cum.latency_ms) FILTER (WHERE cum.seen > k.second) AS hi
        FROM k JOIN cum ON cum.model = k.model GROUP BY 1, 2)
SELECT t.model, t.requests, t.measured, t.errors,
       (SELECT array_agg(p.lo ORDER BY p.i) FROM p WHERE p.model = t.model) AS lo,
       (SELECT array_agg(p.hi ORDER BY p.i) FROM p WHERE p.model = t.model) AS hi
  FROM t ORDER BY t.model
"""


def _percentile_cont(lo: int, hi: int, total: int, q: float) -> float:
    """PostgreSQL's percentile_cont from the values at rows floor/ceil(q x (total - 1)) of the sorted values, with
    its float8 arithmetic (float8_lerp), so the result is the one the SQL aggregate gives to the last bit."""
    position = q * (total - 1)
    first, second = math.floor(position), math.ceil(position)
    return float(lo) if first == second else float(lo) + (float(hi) - float(lo)) * (position - first)


def _latency_from_counts(facts: Facts) -> list[dict[str, Any]]:
    """The rows of the records' percentile query, from usage_latency_counts (a few thousand counts a model)."""
    rows = [
        {
            "model": r["model"],
            "requests": int(r["requests"]),
            "measured": int(r["measured"]),
            "errors": int(r["errors"]),
            "p": [
                _percentile_cont(lo, hi, int(r["measured"]), q)
                for lo, hi, q in zip(r["lo"], r["hi"], QUANTILES, strict=True)
            ]
            if int(r["measured"])
            else None,
        }
        for r in facts.db.all(_LATENCY_FROM_COUNTS, [facts.user_id, list(QUANTILES)])
    ]
    rows.sort(key=lambda m: -m["requests"])  # stable: ties keep the database's model order, as ORDER BY does
    return rows


def latency_percentiles(facts: Facts) -> dict[str, Any]:
    """p50/p90/p95/p99 latency (ms, linear interpolation) and error rate per model."""
    if facts.use_summaries:
        rows = _latency_from_counts(facts)
    else:
        rows = query(
            facts.db,
            """SELECT model, count(*) AS requests, count(latency_ms) AS measured,
                      count(*) FILTER (WHERE status <> 'ok') AS errors,
                      percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms) AS p
                 FROM usage_records WHERE user_id = %s GROUP BY model ORDER BY count(*) DESC, model""",
            [facts.user_id],
        )
    models = []
    for r in rows:
        p = r["p"] or [None] * 4
        models.append(
            {
                "model": r["model"],
                "requests": int(r["requests"]),
                "measured": int(r["measured"]),
                **{
                    f"p{q}_ms": (round(float(v), 1) if v is not None else None)
                    for q, v in zip((50, 90, 95, 99), p, strict=True)
                },
                "error_rate_pct": pct(int(r["errors"]), int(r["requests"])),
            }
        )
    return {"models": models}
