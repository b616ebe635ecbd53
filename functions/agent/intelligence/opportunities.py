"""Savings tools: prompt caching, exact duplicates (response cache), batch, model right-sizing, output trimming
and long-context tier avoidance. Each prices the same tokens under the changed setup with the catalog's rules
and reports period and monthly savings. The modelling rules are stated in docs/INTELLIGENCE.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from functions.agent.intelligence.facts import (
    DUPLICATE_GROUPS,
    RATES_OF_REPEATED,
    Agg,
    Facts,
    cache_rows,
    dup_groups,
    group,
)
from functions.agent.intelligence.pricing_sql import (
    COST,
    GROUP_RATE_JOIN,
    LC,
    RATE_JOIN,
    bucket_costs,
    pct,
    price_of,
    query,
    rates_for_group,
    rates_params,
    usd,
)
from shared.pricing import Price, Rates, get_price, known_models

CLASSIFICATION_MAX_OUTPUT = 20  # average visible output tokens of classification-like traffic
SHORT_OUTPUT_MAX = 200  # average visible output tokens of short-answer traffic
TRIM_MIN_AVG_OUTPUT = 400  # segments with longer average answers are trimming candidates


@dataclass(frozen=True)
class Candidate:
    """One candidate of a savings tool: its exact saving (the sort key and the total, never rounded) beside the
    row the tool returns. The row is what is stored in the event log and checked by the report's figures."""

    savings: Decimal
    row: dict[str, Any]


def _ranked(candidates: list[Candidate], limit: int) -> tuple[list[dict[str, Any]], Decimal]:
    """The rows of the ``limit`` largest savings (ties by model, then feature) and the total of all of them."""
    candidates.sort(key=lambda c: (-c.savings, c.row["model"], c.row["feature"]))
    return [c.row for c in candidates[:limit]], sum((c.savings for c in candidates), Decimal(0))


def _tokens(agg: Agg) -> dict[str, int]:
    return agg.tokens()


def _cost(rates: Rates, tokens: dict[str, int]) -> Decimal:
    return sum(bucket_costs(rates, tokens).values(), Decimal(0))


def _cache_saving(rates: Rates, cacheable: Decimal, writes: Decimal) -> Decimal:
    """What caching saves on ``cacheable`` prompt tokens of which ``writes`` are written (the rest read)."""
    cached_rate = rates.cached_input if rates.cached_input is not None else rates.input
    new = writes * rates.cache_write_rate() + (cacheable - writes) * cached_rate
    return (cacheable * rates.input - new) / 1_000_000


def _by_lc(rows: list[dict[str, Any]]) -> dict[tuple[bool, Any], Agg]:
    """Sums per (long-context tier, price period): each part is priced with its own rates."""
    return group(rows, lambda r: (bool(r["lc"]), r["pday"]))


def _rates(model: str, part: tuple[bool, Any]) -> Rates:
    """The rates of a part of a model's traffic: its price period, its long-context tier."""
    lc, pday = part
    price = price_of(model, pday)
    assert price is not None
    return rates_for_group(price, lc)


# -- prompt caching ----------------------------------------------------------------------------------------------
def caching_opportunity(facts: Facts, ttl_minutes: int = 5, limit: int = 5) -> dict[str, Any]:
    """Repeated prefixes at or above the model's minimum cacheable length, priced with cache reads and writes.

    Requests are put in fixed windows of the cache lifetime per (model, prefix): the first request of a window
    writes the prefix (Anthropic bills writes at 1.25x input; OpenAI/Google write at the input rate), the others
    read it at the cached rate. Only the prefix tokens not already read from or written to a cache count.
    The rows are those the savings plan prices (facts.cache_rows), so both agree.
    """
    groups: dict[tuple[str, bool, str, int], dict[str, Any]] = {}
    below: dict[str, dict[str, Any]] = {}
    for r in cache_rows(facts, ttl_minutes):
        price = price_of(r["model"], r["pday"])
        if price is None or price.base.cached_input is None:
            continue
        minimum = price.min_cacheable_tokens or 0
        if int(r["prefix_tokens"]) < minimum:
            b = below.setdefault(r["model"], {"model": r["model"], "requests": 0, "min_cacheable_tokens": minimum})
            b["requests"] += int(r["requests"])
            continue
        g = groups.setdefault(
            (r["model"], bool(r["lc"]), r["pday"], r["prefix_hash"], int(r["prefix_tokens"])),
            {"requests": 0, "windows": Decimal(0), "cacheable": Decimal(0), "savings": Decimal(0), "bg": Decimal(0)},
        )
        rates = rates_for_group(price, bool(r["lc"]))
        saving = _cache_saving(rates, Decimal(r["s"]), Decimal(r["writes"]))
        g["requests"] += int(r["requests"])
        g["windows"] += Decimal(r["windows"])
        g["cacheable"] += Decimal(r["s"])
        g["savings"] += saving
        if r["interactive"] is False:
            g["bg"] += saving
    rows = [
        {"model": m, "lc": lc, "pday": pday, "prefix_hash": h, "prefix_tokens": t, **g}
        for (m, lc, pday, h, t), g in groups.items()
        if g["cacheable"] > 0
    ]
    per_model: dict[str, dict[str, Any]] = {}
    prefixes = []
    for r in rows:
        price = get_price(r["model"], r["pday"])
        rates = rates_for_group(price, r["lc"])
        tokens = r["cacheable"]
        current = tokens * rates.input / 1_000_000
        savings = r["savings"]
        new = current - savings
        if savings <= 0:  # a prefix that is never re-read within its lifetime only pays the write premium
            continue
        background = r["bg"]
        m = per_model.setdefault(
            r["model"],
            {
                "model": r["model"],
                "provider": price.provider,
                "cache_mode": price.cache_mode,
                "min_cacheable_tokens": price.min_cacheable_tokens,
                "prefixes": 0,
                "requests": 0,
                "cache_reads": 0,
                "cacheable_tokens": 0,
                "current": Decimal(0),
                "new": Decimal(0),
                "savings": Decimal(0),
                "background": Decimal(0),
            },
        )
        requests, windows = int(r["requests"]), int(r["windows"].quantize(Decimal(1)))
        m["prefixes"] += 1
        m["requests"] += requests
        m["cache_reads"] += requests - windows
        m["cacheable_tokens"] += int(tokens)
        m["current"] += current
        m["new"] += new
        m["savings"] += savings
        m["background"] += background
        prefixes.append(
            {
                "model": r["model"],
                "prefix_hash": r["prefix_hash"],
                "prefix_tokens": int(r["prefix_tokens"]),
                "requests": requests,
                "cache_reads": requests - windows,
                "savings": savings,
            }
        )
    models = []
    for m in sorted(per_model.values(), key=lambda m: (-m["savings"], m["model"])):
        models.append(
            {
                "model": m["model"],
                "provider": m["provider"],
                "cache_mode": m["cache_mode"],
                "min_cacheable_tokens": m["min_cacheable_tokens"],
                "prefixes": m["prefixes"],
                "requests": m["requests"],
                "cache_reads": m["cache_reads"],
                "hit_rate_pct": pct(m["cache_reads"], m["requests"]),
                "cacheable_tokens": m["cacheable_tokens"],
                "current_cost_usd": usd(m["current"]),
                "cached_cost_usd": usd(m["new"]),
                "savings_usd": usd(m["savings"]),
                "monthly_savings_usd": usd(facts.monthly(m["savings"])),
                "monthly_savings_background_usd": usd(facts.monthly(m["background"])),
            }
        )
    top = sorted(prefixes, key=lambda p: (-p["savings"], p["model"], p["prefix_hash"]))[:limit]
    total = sum((m["savings"] for m in per_model.values()), Decimal(0))
    return {
        "ttl_minutes": ttl_minutes,
        "models": models,
        "top_prefixes": [
            {**{k: v for k, v in p.items() if k != "savings"}, "monthly_savings_usd": usd(facts.monthly(p["savings"]))}
            for p in top
        ],
        "below_minimum": sorted(below.values(), key=lambda b: (-b["requests"], b["model"])),
        "savings_usd": usd(total),
        "monthly_savings_usd": usd(facts.monthly(total)),
    }


# -- exact duplicates ---------------------------------------------------------------------------------------------
def duplicate_requests(facts: Facts, limit: int = 5) -> dict[str, Any]:
    """Requests whose request_hash repeats: a response cache would answer every repeat. Savings of a group of
    n identical requests = its cost x (n - 1) / n (an upper bound: the cache keeps answers for the period)."""
    groups = f"""
        WITH {DUPLICATE_GROUPS}, {RATES_OF_REPEATED},
        g AS (SELECT d.model, d.request_hash, d.n, r.pday, {LC} AS lc, sum(u.input_tokens) AS i,
                     sum(u.cached_input_tokens) AS c, sum(u.cache_write_tokens) AS w, sum(u.output_tokens) AS o,
                     sum(u.reasoning_tokens) AS rs
                FROM d JOIN usage_records u
                  ON u.user_id = %s AND u.model = d.model AND u.request_hash = d.request_hash
                JOIN rates r ON {RATE_JOIN}
               GROUP BY 1, 2, 3, 4, 5),
        s AS MATERIALIZED (SELECT g.model, g.request_hash, g.n, sum({COST}) * (g.n - 1) / g.n AS savings
                             FROM g JOIN rates r ON {GROUP_RATE_JOIN} GROUP BY 1, 2, 3)
        SELECT 'model' AS kind, model, NULL AS request_hash, count(*) AS groups, sum(n) AS requests,
               sum(n - 1) AS repeats, sum(savings) AS savings FROM s GROUP BY model
        UNION ALL
        (SELECT 'group', model, request_hash, 1, n, n - 1, savings FROM s
          ORDER BY savings DESC, model, request_hash LIMIT %s)"""
    # The groups come from facts.dup_groups (found once per run); each repeated request is priced at the rates
    # of its own day (the groups are few: index lookups).
    rows = query(facts.db, groups, [*dup_groups(facts), *rates_params(), facts.user_id, limit])
    per_model = sorted((r for r in rows if r["kind"] == "model"), key=lambda r: (-r["savings"], r["model"]))
    top = [{**r, "n": r["requests"]} for r in rows if r["kind"] == "group"]
    top.sort(key=lambda r: (-r["savings"], r["model"], r["request_hash"]))
    total = sum((Decimal(r["savings"]) for r in per_model), Decimal(0))
    return {
        "models": [
            {
                "model": r["model"],
                "groups": int(r["groups"]),
                "requests": int(r["requests"]),
                "repeats": int(r["repeats"]),
                "savings_usd": usd(r["savings"]),
                "monthly_savings_usd": usd(facts.monthly(Decimal(r["savings"]))),
            }
            for r in per_model
        ],
        "top_groups": [
            {
                "model": r["model"],
                "request_hash": r["request_hash"],
                "requests": int(r["n"]),
                "monthly_savings_usd": usd(facts.monthly(Decimal(r["savings"]))),
            }
            for r in top
        ],
        "repeats": sum(int(r["repeats"]) for r in per_model),
        "savings_usd": usd(total),
        "monthly_savings_usd": usd(facts.monthly(total)),
    }


# -- batch ---------------------------------------------------------------------------------------------------------
def batch_rates(price: Price, rates: Rates) -> Rates:
    """The batch version of a tier's rates: the documented discount on every bucket; where the provider does
    not stack batch and caching discounts, cache reads and writes are billed at the batch input rate."""
    d = price.batch_discount or Decimal(1)
    stacks = price.batch_stacks_with_cache and rates.cached_input is not None
    return Rates(
        input=rates.input * d,
        cached_input=(rates.cached_input * d) if stacks and rates.cached_input is not None else rates.input * d,
        cache_write={k: v * d for k, v in rates.cache_write.items()} if stacks and rates.cache_write else None,
        output=rates.output * d,
        reasoning=rates.reasoning * d,
    )


def batch_opportunity(facts: Facts, limit: int = 5) -> dict[str, Any]:
    """Non-interactive traffic (interactive = false) moved to the provider's batch API at batch prices."""
    background = [r for r in facts.segments if r["interactive"] is False]
    per_model: dict[str, dict[str, Any]] = {}
    segments = []
    no_tier: dict[str, int] = {}
    for (model, feature), rows in _split(background, lambda r: (r["model"], r["feature"])).items():
        price = price_of(model)
        if price is None:
            continue
        if price.batch is None:
            no_tier[model] = no_tier.get(model, 0) + sum(int(r["n"]) for r in rows)
            continue
        current = Decimal(0)
        batch = Decimal(0)
        n = 0
        for part, agg in _by_lc(rows).items():
            period = price_of(model, part[1]) or price
            rates = rates_for_group(period, part[0])
            current += _cost(rates, _tokens(agg))
            batch += (
                _cost(batch_rates(period, rates), _tokens(agg))
                if period.batch is not None
                else _cost(rates, _tokens(agg))
            )
            n += agg.n
        savings = current - batch
        if savings <= 0:  # cache reads cheaper than batch input outweigh the discount
            continue
        m = per_model.setdefault(
            model,
            {
                "model": model,
                "provider": price.provider,
                "batch_discount_pct": pct(1 - (price.batch_discount or 1), 1, "1"),
                "stacks_with_cache": price.batch_stacks_with_cache,
                "requests": 0,
                "current": Decimal(0),
                "batch": Decimal(0),
            },
        )
        m["requests"] += n
        m["current"] += current
        m["batch"] += batch
        segments.append({"model": model, "feature": feature or "(none)", "requests": n, "savings": savings})
    models = [
        {
            **{k: v for k, v in m.items() if k not in ("current", "batch")},
            "current_cost_usd": usd(m["current"]),
            "batch_cost_usd": usd(m["batch"]),
            "savings_usd": usd(m["current"] - m["batch"]),
            "monthly_savings_usd": usd(facts.monthly(m["current"] - m["batch"])),
        }
        for m in sorted(per_model.values(), key=lambda m: (-(m["current"] - m["batch"]), m["model"]))
    ]
    total = sum((m["current"] - m["batch"] for m in per_model.values()), Decimal(0))
    unknown = sum(int(r["n"]) for r in facts.segments if r["interactive"] is None)
    return {
        "models": models,
        "top_segments": [
            {k: v for k, v in s.items() if k != "savings"} | {"monthly_savings_usd": usd(facts.monthly(s["savings"]))}
            for s in sorted(segments, key=lambda s: (-s["savings"], s["model"], s["feature"]))[:limit]
        ],
        "background_requests": sum(int(r["n"]) for r in background),
        "unknown_interactive_requests": unknown,
        "no_batch_tier": [{"model": k, "requests": v} for k, v in sorted(no_tier.items())],
        "savings_usd": usd(total),
        "monthly_savings_usd": usd(facts.monthly(total)),
    }


def _split(rows: list[dict[str, Any]], key: Any) -> dict[Any, list[dict[str, Any]]]:
    out: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(key(row), []).append(row)
    return out


# -- model right-sizing -------------------------------------------------------------------------------------------
def _target_rates(target: Price, lc: bool) -> Rates:
    return target.long_context[0].rates if lc and target.long_context else target.base


def choose_target(price: Price, kind: str, max_prompt: int, max_output: int, cost_on: Any) -> Price | None:
    """The cheaper model for a segment: same provider, current (not legacy), large enough, in the highest tier
    allowed (economy for classification-like traffic, one tier down for short answers), cheapest on the
    segment's own tokens; the lowest tier available when nothing fits the allowed tier."""
    rank = price.tier_rank
    allowed = 0 if kind == "classification" else rank - 1
    candidates = []
    for name in known_models():
        other = get_price(name)
        if (
            other.provider != price.provider
            or other.legacy
            or other.tier_rank >= rank
            or other.input_limit < max_prompt
            or other.max_output_tokens < max_output
        ):
            continue
        candidates.append(other)
    if not candidates:
        return None
    fitting = [c for c in candidates if c.tier_rank <= allowed]
    if fitting:
        top = max(c.tier_rank for c in fitting)
        pool = [c for c in fitting if c.tier_rank == top]
    else:
        low = min(c.tier_rank for c in candidates)
        pool = [c for c in candidates if c.tier_rank == low]
    return min(pool, key=lambda c: (cost_on(c), known_models().index(c.model)))


def model_rightsizing(facts: Facts, min_requests: int = 10, limit: int = 10) -> dict[str, Any]:
    """Premium/frontier traffic with short or classification-like answers, priced on a cheaper model of the
    same provider (same token counts; tokenizers differ a little, said in the risk note)."""
    candidates: list[Candidate] = []
    checked = 0
    for (model, feature), rows in _split(facts.segments, lambda r: (r["model"], r["feature"])).items():
        price = price_of(model)
        if price is None or price.tier not in ("premium", "frontier"):
            continue
        parts = _by_lc(rows)
        n = sum(a.n for a in parts.values())
        if n < min_requests:
            continue
        checked += 1
        avg_output = Decimal(sum(a.o for a in parts.values())) / n
        if avg_output <= CLASSIFICATION_MAX_OUTPUT:
            kind = "classification"
        elif avg_output <= SHORT_OUTPUT_MAX:
            kind = "short_output"
        else:
            continue
        max_prompt = max(int(r["max_prompt"]) for r in rows)
        max_output = max(int(r["max_output"]) for r in rows)

        def cost_on(target: Price, parts: dict[tuple[bool, Any], Agg] = parts) -> Decimal:
            # The target at the price it had in each part's price period.
            return sum(
                (
                    _cost(_target_rates(get_price(target.model, pday), lc), _tokens(a))
                    for (lc, pday), a in parts.items()
                ),
                Decimal(0),
            )

        target = choose_target(price, kind, max_prompt, max_output, cost_on)
        if target is None:
            continue
        current = sum((_cost(_rates(model, part), _tokens(a)) for part, a in parts.items()), Decimal(0))
        new = cost_on(target)
        if new >= current:
            continue
        risk = "low" if kind == "classification" else "medium"
        note = (
            f"classification-like answers (about {round(avg_output)} output tokens) usually keep their accuracy "
            f"on {target.model}; check on a labelled sample before switching"
            if kind == "classification"
            else f"short answers (about {round(avg_output)} output tokens) on a {target.tier} model may lose "
            f"quality on hard cases; A/B test {target.model} on a slice of traffic first"
        )
        candidates.append(
            Candidate(
                current - new,
                {
                    "model": model,
                    "feature": feature or "(none)",
                    "kind": kind,
                    "requests": n,
                    "avg_output_tokens": round(avg_output),
                    "target_model": target.model,
                    "target_tier": target.tier,
                    "current_cost_usd": usd(current),
                    "target_cost_usd": usd(new),
                    "savings_usd": usd(current - new),
                    "monthly_savings_usd": usd(facts.monthly(current - new)),
                    "quality_risk": risk,
                    "risk_note": note,
                },
            )
        )
    rows, total = _ranked(candidates, limit)
    return {
        "candidates": rows,
        "checked_segments": checked,
        "savings_usd": usd(total),
        "monthly_savings_usd": usd(facts.monthly(total)),
    }


# -- output trimming ----------------------------------------------------------------------------------------------
def output_trimming(facts: Facts, reduction_pct: int = 25, limit: int = 10) -> dict[str, Any]:
    """Segments whose answers average at least 400 visible output tokens: asking for concise answers (and a
    max_tokens cap) is assumed to cut their output tokens by ``reduction_pct`` percent."""
    share = Decimal(reduction_pct) / 100
    candidates: list[Candidate] = []
    for (model, feature), rows in _split(facts.segments, lambda r: (r["model"], r["feature"])).items():
        price = price_of(model)
        if price is None:
            continue
        parts = _by_lc(rows)
        n = sum(a.n for a in parts.values())
        output = sum(a.o for a in parts.values())
        if not n or Decimal(output) / n < TRIM_MIN_AVG_OUTPUT:
            continue
        output_cost = sum(
            (bucket_costs(_rates(model, part), _tokens(a))["output_tokens"] for part, a in parts.items()),
            Decimal(0),
        )
        savings = output_cost * share
        avg_output = Decimal(output) / n
        with_cap = sum(int(r["has_max_tokens"]) for r in rows)
        cap_sum = sum(int(r["sum_max_tokens"]) for r in rows)
        candidates.append(
            Candidate(
                savings,
                {
                    "model": model,
                    "feature": feature or "(none)",
                    "requests": n,
                    "avg_output_tokens": round(avg_output),
                    "requests_with_max_tokens": with_cap,
                    "avg_max_tokens": round(cap_sum / with_cap) if with_cap else None,
                    "suggested_max_tokens": int(math.ceil(avg_output * Decimal("1.5") / 100) * 100),
                    "output_cost_usd": usd(output_cost),
                    "savings_usd": usd(savings),
                    "monthly_savings_usd": usd(facts.monthly(savings)),
                },
            )
        )
    rows, total = _ranked(candidates, limit)
    return {
        "reduction_pct": reduction_pct,
        "candidates": rows,
        "savings_usd": usd(total),
        "monthly_savings_usd": usd(facts.monthly(total)),
    }


# -- long context -------------------------------------------------------------------------------------------------
def long_context(facts: Facts) -> dict[str, Any]:
    """Requests whose prompt is above the model's long-context threshold pay the higher tier for the whole
    request; keeping them under it (retrieval, history summaries) saves the tier premium at the same tokens."""
    models: list[Candidate] = []
    total = Decimal(0)
    for model, rows in _split([r for r in facts.segments if r["lc"]], lambda r: r["model"]).items():
        price = get_price(model)
        agg = group(rows, lambda r: None)[None]
        current = base = Decimal(0)
        for pday, part in group(rows, lambda r: r["pday"]).items():
            period = get_price(model, pday)
            current += _cost(period.long_context[0].rates, _tokens(part))
            base += _cost(period.base, _tokens(part))
        total += current - base
        models.append(
            Candidate(
                current - base,
                {
                    "model": model,
                    "threshold_tokens": price.long_context[0].above_input_tokens,
                    "requests": agg.n,
                    "avg_prompt_tokens": round(agg.input_all / agg.n),
                    "current_cost_usd": usd(current),
                    "base_tier_cost_usd": usd(base),
                    "savings_usd": usd(current - base),
                    "monthly_savings_usd": usd(facts.monthly(current - base)),
                },
            )
        )
    models.sort(key=lambda m: (-m.savings, m.row["model"]))
    return {
        "models": [m.row for m in models],
        "long_context_requests": sum(m.row["requests"] for m in models),
        "savings_usd": usd(total),
        "monthly_savings_usd": usd(facts.monthly(total)),
    }
