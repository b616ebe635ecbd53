"""Recommendations from the savings tools, ranked by monthly savings, effort and risk, and the what-if
projection of a chosen set with usage growth.

Ranking: score = stand-alone monthly savings / (effort weight x risk weight), weights low 1, medium 2, high 3;
ties by monthly savings, then id. What the recommendations save together is not their sum: the savings plan
(plan.py) applies them in one order on the traffic each leaves to the next, and the what-if projection grows
the plan's monthly figures.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from functions.agent.intelligence.plan import savings_plan
from functions.agent.intelligence.pricing_sql import usd

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
    """The recommendations in order of score. No total: stand-alone savings do not add up (see plan.py)."""

    def score(rec: dict[str, Any]) -> Decimal:
        weight = WEIGHTS[rec["effort"]] * WEIGHTS[rec["risk"]]
        return (_money(rec["monthly_savings_usd"]) / weight).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    ordered = sorted(recs, key=lambda r: (-score(r), -_money(r["monthly_savings_usd"]), r["id"]))
    ranked = [{"rank": i, **r, "score": float(score(r))} for i, r in enumerate(ordered, start=1)]
    return {"recommendations": ranked, "count": len(ranked)}


def projection(plan: dict[str, Any], growth_pct_per_month: float = 0.0, months: int = 6) -> dict[str, Any]:
    """The plan's monthly cost with and without it over ``months`` months where usage grows by
    ``growth_pct_per_month`` each month (month 1 is today's volume)."""
    if months < 1 or months > 36:
        raise ValueError("months must be between 1 and 36")
    baseline = _money(plan["baseline_monthly_usd"])
    savings = _money(plan["monthly_savings_usd"])
    optimized = _money(plan["optimized_monthly_usd"])
    growth = Decimal(str(growth_pct_per_month)) / 100
    rows = []
    for month in range(1, months + 1):
        scale = (1 + growth) ** (month - 1)
        rows.append(
            {
                "month": month,
                "baseline_usd": usd(baseline * scale),
                "optimized_usd": usd(optimized * scale),
                "savings_usd": usd(savings * scale),
            }
        )
    return {
        "chosen": plan["chosen"],
        "in_plan": plan["in_plan"],
        "growth_pct_per_month": float(growth_pct_per_month),
        "months": months,
        "baseline_monthly_usd": plan["baseline_monthly_usd"],
        "optimized_monthly_usd": plan["optimized_monthly_usd"],
        "monthly_savings_usd": plan["monthly_savings_usd"],
        "savings_pct": plan["savings_pct"],
        "by_model": plan["by_model"],
        "projection": rows,
        "horizon_savings_usd": usd(sum((_money(p["savings_usd"]) for p in rows), Decimal(0))),
    }


def what_if(
    inputs: dict[str, Any],
    recs: list[dict[str, Any]],
    chosen: list[str] | None = None,
    growth_pct_per_month: float = 0.0,
    months: int = 6,
) -> dict[str, Any]:
    """The projection of the savings plan of the chosen recommendations (all when ``chosen`` is None)."""
    if months < 1 or months > 36:
        raise ValueError("months must be between 1 and 36")
    return projection(savings_plan(inputs, recs, chosen), growth_pct_per_month, months)
