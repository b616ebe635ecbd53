"""Recommendations from the savings tools, ranked by monthly savings, effort and risk, and the what-if
simulator that applies a chosen set with usage growth.

Ranking: score = monthly savings / (effort weight x risk weight), weights low 1, medium 2, high 3; ties by
monthly savings, then id. The simulator works from the figures the tools showed (cents), per model:
combined savings = model cost x (1 - product of (1 - savings_i / model cost)); where a provider does not
stack batch and caching discounts, the background part of the caching savings and the batch savings are not
added: the larger one counts.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from functions.agent.intelligence.pricing_sql import usd
from shared.pricing import get_price

WEIGHTS = {"low": 1, "medium": 2, "high": 3}

EFFORT = {
    "prompt_caching": "low",
    "response_cache": "medium",
    "batch": "medium",
    "rightsizing": "low",
    "output_trimming": "low",
    "long_context": "high",
}
RISK = {
    "prompt_caching": "low",
    "response_cache": "low",
    "batch": "low",
    "output_trimming": "medium",
    "long_context": "medium",
}


def _money(value: Any) -> Decimal:
    return Decimal(str(value or 0))


def build(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every recommendation worth at least a cent a month, from the results of the savings tools by name."""
    recs: list[dict[str, Any]] = []

    def add(
        kind: str,
        key: str,
        title: str,
        model: str,
        monthly: Any,
        risk_note: str,
        details: dict[str, Any],
        feature: str | None = None,
        risk: str | None = None,
    ) -> None:
        if _money(monthly) < Decimal("0.01"):
            return
        recs.append(
            {
                "id": f"{kind}:{key}",
                "kind": kind,
                "title": title,
                "model": model,
                "feature": feature,
                "monthly_savings_usd": usd(monthly),
                "effort": EFFORT[kind],
                "risk": risk or RISK[kind],
                "risk_note": risk_note,
                "details": details,
            }
        )

    for m in results.get("caching_opportunity", {}).get("models", []):
        add(
            "prompt_caching",
            m["model"],
            f"Cache the repeated prompt prefixes on {m['model']}",
            m["model"],
            m["monthly_savings_usd"],
            "no change to answers; the first request in each cache lifetime pays the cache write",
            {
                "prefixes": m["prefixes"],
                "requests": m["requests"],
                "hit_rate_pct": m["hit_rate_pct"],
                "cache_mode": m["cache_mode"],
                "min_cacheable_tokens": m["min_cacheable_tokens"],
                "ttl_minutes": results["caching_opportunity"]["ttl_minutes"],
                "monthly_savings_background_usd": m["monthly_savings_background_usd"],
            },
        )
    for m in results.get("duplicate_requests", {}).get("models", []):
        add(
            "response_cache",
            m["model"],
            f"Serve repeated identical requests on {m['model']} from a response cache",
            m["model"],
            m["monthly_savings_usd"],
            "identical requests get the stored answer; set a TTL so answers do not go stale",
            {"repeats": m["repeats"], "groups": m["groups"]},
        )
    for m in results.get("batch_opportunity", {}).get("models", []):
        add(
            "batch",
            m["model"],
            f"Move background traffic on {m['model']} to the batch API",
            m["model"],
            m["monthly_savings_usd"],
            "results arrive within 24 hours instead of seconds; only for background work",
            {
                "requests": m["requests"],
                "batch_discount_pct": m["batch_discount_pct"],
                "stacks_with_cache": m["stacks_with_cache"],
            },
        )
    for c in results.get("model_rightsizing", {}).get("candidates", []):
        add(
            "rightsizing",
            f"{c['model']}:{c['feature']}",
            f"Route {c['feature']} traffic from {c['model']} to {c['target_model']}",
            c["model"],
            c["monthly_savings_usd"],
            c["risk_note"],
            {
                "target_model": c["target_model"],
                "requests": c["requests"],
                "kind": c["kind"],
                "avg_output_tokens": c["avg_output_tokens"],
            },
            feature=c["feature"],
            risk=c["quality_risk"],
        )
    for c in results.get("output_trimming", {}).get("candidates", []):
        add(
            "output_trimming",
            f"{c['model']}:{c['feature']}",
            f"Ask for shorter answers in {c['feature']} on {c['model']}",
            c["model"],
            c["monthly_savings_usd"],
            "answers get shorter; check that users still get what they need",
            {
                "avg_output_tokens": c["avg_output_tokens"],
                "suggested_max_tokens": c["suggested_max_tokens"],
                "reduction_pct": results["output_trimming"]["reduction_pct"],
            },
            feature=c["feature"],
        )
    for m in results.get("long_context", {}).get("models", []):
        add(
            "long_context",
            m["model"],
            f"Keep prompts on {m['model']} under {m['threshold_tokens']:,} tokens",
            m["model"],
            m["monthly_savings_usd"],
            "retrieval or summarised history must keep what the answer needs",
            {
                "requests": m["requests"],
                "threshold_tokens": m["threshold_tokens"],
                "avg_prompt_tokens": m["avg_prompt_tokens"],
            },
        )
    return recs


def rank(recs: list[dict[str, Any]]) -> dict[str, Any]:
    def score(rec: dict[str, Any]) -> Decimal:
        weight = WEIGHTS[rec["effort"]] * WEIGHTS[rec["risk"]]
        return (_money(rec["monthly_savings_usd"]) / weight).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    ordered = sorted(recs, key=lambda r: (-score(r), -_money(r["monthly_savings_usd"]), r["id"]))
    ranked = [{"rank": i, **r, "score": float(score(r))} for i, r in enumerate(ordered, start=1)]
    return {
        "recommendations": ranked,
        "count": len(ranked),
        "monthly_savings_usd": usd(sum((_money(r["monthly_savings_usd"]) for r in ranked), Decimal(0))),
    }


def _stacks(model: str) -> bool:
    try:
        return get_price(model).batch_stacks_with_cache
    except KeyError:
        return True


def what_if(
    overview: dict[str, Any],
    recs: list[dict[str, Any]],
    chosen: list[str] | None = None,
    growth_pct_per_month: float = 0.0,
    months: int = 6,
) -> dict[str, Any]:
    """Monthly cost with the chosen recommendations (all when ``chosen`` is None), over ``months`` months where
    usage grows by ``growth_pct_per_month`` each month (month 1 is today's volume)."""
    if months < 1 or months > 36:
        raise ValueError("months must be between 1 and 36")
    by_id = {r["id"]: r for r in recs}
    unknown = [c for c in (chosen or []) if c not in by_id]
    if unknown:
        raise ValueError(f"unknown recommendation ids: {', '.join(unknown)}")
    selected = [by_id[c] for c in chosen] if chosen is not None else list(recs)
    model_cost = {m["model"]: _money(m["monthly_cost_usd"]) for m in overview.get("models", [])}
    baseline = _money(overview.get("monthly_cost_usd"))
    per_model: dict[str, list[Decimal]] = {}
    for model in sorted({r["model"] for r in selected}):
        cost = model_cost.get(model, Decimal(0))
        mine = [r for r in selected if r["model"] == model]
        amounts = [_money(r["monthly_savings_usd"]) for r in mine if r["kind"] not in ("prompt_caching", "batch")]
        cache = next((r for r in mine if r["kind"] == "prompt_caching"), None)
        batch = next((r for r in mine if r["kind"] == "batch"), None)
        if cache and batch and not _stacks(model):
            background = _money(cache["details"]["monthly_savings_background_usd"])
            amounts.append(
                _money(cache["monthly_savings_usd"])
                - background
                + max(background, _money(batch["monthly_savings_usd"]))
            )
        else:
            amounts += [_money(r["monthly_savings_usd"]) for r in (cache, batch) if r]
        per_model[model] = [cost, *amounts]
    savings = Decimal(0)
    model_rows = []
    for model, (cost, *amounts) in per_model.items():
        if cost <= 0:
            continue
        remaining = Decimal(1)
        for amount in amounts:
            remaining *= max(Decimal(0), 1 - amount / cost)
        saved = cost * (1 - remaining)
        savings += saved
        model_rows.append({"model": model, "monthly_cost_usd": usd(cost), "monthly_savings_usd": usd(saved)})
    savings = Decimal(str(usd(savings)))
    optimized = baseline - savings
    growth = Decimal(str(growth_pct_per_month)) / 100
    projection = []
    for month in range(1, months + 1):
        scale = (1 + growth) ** (month - 1)
        projection.append(
            {
                "month": month,
                "baseline_usd": usd(baseline * scale),
                "optimized_usd": usd(optimized * scale),
                "savings_usd": usd(savings * scale),
            }
        )
    return {
        "chosen": [r["id"] for r in selected],
        "growth_pct_per_month": float(growth_pct_per_month),
        "months": months,
        "baseline_monthly_usd": usd(baseline),
        "optimized_monthly_usd": usd(optimized),
        "monthly_savings_usd": usd(savings),
        "savings_pct": float((savings * 100 / baseline).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))
        if baseline
        else 0.0,
        "by_model": model_rows,
        "projection": projection,
        "horizon_savings_usd": usd(sum((_money(p["savings_usd"]) for p in projection), Decimal(0))),
    }
