"""The analysis tools on hand-priced reference datasets (tests/intelligence/datasets.py), to the cent.

Dataset A spans 2 days, so monthly = period x 30 / 2 = period x 15. Per request (list prices in datasets.py):
  chat      gpt-4o   100,000 in x 2.50 + 2,000 out x 10     = 0.25 + 0.02     = 0.27     x10 = 2.70
  classify  gpt-4o    50,000 in x 2.50 +    10 out x 10     = 0.125 + 0.0001  = 0.1251   x20 = 2.502
  summarize sonnet   100,000 in x 3.00 + 4,000 out x 15     = 0.30 + 0.06     = 0.36     x6  = 2.16
  rag       gemini   250,000 in x 2.50 + 1,000 out x 15 (long-context tier)   = 0.64     x2  = 1.28
  extract   4o-mini   10,000 in x 0.15 +   100 out x 0.60   = 0.0015 + 0.00006 = 0.00156 x2 = 0.00312
  total 8.64512 -> $8.65; monthly 129.6768 -> $129.68
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from functions.agent.intelligence import recommendations
from functions.agent.intelligence.pipeline import run
from functions.agent.intelligence.plan import savings_plan
from functions.agent.intelligence.toolbox import FULL_ANALYSIS, Toolbox
from shared.pricing import cost_usd
from shared.pricing.source import current_snapshot
from tests.intelligence import datasets
from tests.intelligence.conftest import make_user
from tests.intelligence.harness import TestRunContext


@pytest.fixture(scope="module")
def user_a(intel_db: Any) -> str:
    user = make_user(intel_db)
    datasets.load(intel_db, user, datasets.dataset_a())
    return user


@pytest.fixture(scope="module")
def user_b(intel_db: Any) -> str:
    user = make_user(intel_db)
    datasets.load(intel_db, user, datasets.dataset_b())
    return user


@pytest.fixture(scope="module")
def results_a(intel_db: Any, user_a: str) -> dict[str, Any]:
    toolbox = Toolbox(intel_db, user_a, use_rollups=False)
    return {(f"{n}:{a['by']}" if "by" in a else n): toolbox.call(n, a) for n, a in FULL_ANALYSIS}


def rows(result: dict[str, Any], key: str = "key") -> dict[str, dict[str, Any]]:
    return {r[key]: r for r in result["rows"]}


def test_sql_cost_equals_python_cost_per_call(intel_db: Any, user_a: str, results_a: dict[str, Any]) -> None:
    """The SQL pricing of grouped sums equals the sum of shared.pricing.cost_usd over the rows, exactly."""
    records = intel_db.all("SELECT * FROM usage_records WHERE user_id = %s AND model <> 'acme-llm-1'", [user_a])

    class Usage:
        def __init__(self, r: dict[str, Any]) -> None:
            self.__dict__.update(
                {
                    k: r[k]
                    for k in (
                        "input_tokens",
                        "cached_input_tokens",
                        "cache_write_tokens",
                        "output_tokens",
                        "reasoning_tokens",
                    )
                }
            )

    exact = sum((cost_usd(r["model"], Usage(r)) for r in records), Decimal(0))
    assert exact == Decimal("8.64512")
    assert results_a["usage_overview"]["total_cost_usd"] == 8.65


def test_overview_and_breakdowns(results_a: dict[str, Any]) -> None:
    overview = results_a["usage_overview"]
    assert (overview["records"], overview["period_days"], overview["first_day"], overview["last_day"]) == (
        41,
        2,
        "2025-03-01",
        "2025-03-02",
    )
    assert overview["total_cost_usd"] == 8.65 and overview["monthly_cost_usd"] == 129.68
    assert overview["failed_requests"] == 1 and overview["unpriced_models"] == ["acme-llm-1"]
    models = {m["model"]: (m["requests"], m["cost_usd"], m["monthly_cost_usd"]) for m in overview["models"]}
    assert models == {
        "gpt-4o": (30, 5.20, 78.03),
        "claude-sonnet-4-5": (6, 2.16, 32.40),
        "gemini-2.5-pro": (2, 1.28, 19.20),
        "gpt-4o-mini": (2, 0.00, 0.05),
        "acme-llm-1": (1, 0.00, 0.00),
    }
    assert overview["coverage_pct"] == {
        "feature": 100.0,
        "end_user": 73.2,
        "prefix_hash": 39.0,
        "prefix_tokens": 39.0,
        "request_hash": 73.2,
        "interactive": 97.6,
        "latency_ms": 24.4,
        "max_tokens": 0.0,
    }

    by_model = results_a["cost_breakdown:model"]
    assert [r["key"] for r in by_model["rows"]][:3] == ["gpt-4o", "claude-sonnet-4-5", "gemini-2.5-pro"]
    assert {k: (r["cost_usd"], r["share_pct"]) for k, r in rows(by_model).items()} == {
        "gpt-4o": (5.20, 60.2),
        "claude-sonnet-4-5": (2.16, 25.0),
        "gemini-2.5-pro": (1.28, 14.8),
        "gpt-4o-mini": (0.00, 0.0),
        "acme-llm-1": (0.00, 0.0),
    }

    by_feature = rows(results_a["cost_breakdown:feature"])
    assert {
        k: (r["requests"], r["cost_usd"], r["monthly_cost_usd"], r["share_pct"]) for k, r in by_feature.items()
    } == {
        "chat": (10, 2.70, 40.50, 31.2),
        "classify": (20, 2.50, 37.53, 28.9),
        "summarize": (6, 2.16, 32.40, 25.0),
        "rag": (2, 1.28, 19.20, 14.8),
        "extract": (2, 0.00, 0.05, 0.0),
        "misc": (1, 0.00, 0.00, 0.0),
    }

    by_user = results_a["cost_breakdown:end_user"]
    assert [(r["key"], r["requests"], r["cost_usd"], r["share_pct"]) for r in by_user["rows"]] == [
        ("(none)", 11, 3.44, 39.8),
        ("carol", 20, 2.50, 28.9),
        ("alice", 5, 1.35, 15.6),
        ("bob", 5, 1.35, 15.6),
    ]

    by_day = results_a["cost_breakdown:day"]
    assert [(r["key"], r["requests"], r["cost_usd"]) for r in by_day["rows"]] == [
        ("2025-03-01", 20, 4.32),
        ("2025-03-02", 21, 4.32),
    ]


def test_drivers_and_latency(results_a: dict[str, Any]) -> None:
    drivers = results_a["cost_drivers"]
    buckets = {b["bucket"]: (b["tokens"], b["cost_usd"], b["share_pct"]) for b in drivers["by_bucket"]}
    # input 2.50 + 2.50 + 1.80 + 1.25 + 0.003 = 8.053; output 0.20 + 0.002 + 0.36 + 0.03 + 0.00012 = 0.59212
    assert buckets["input_tokens"] == (3_121_000, 8.05, 93.2)
    assert buckets["output_tokens"] == (46_500, 0.59, 6.8)
    assert drivers["top_segments"][0] == {
        "model": "gpt-4o",
        "feature": "chat",
        "requests": 10,
        "cost_usd": 2.70,
        "monthly_cost_usd": 40.50,
        "share_pct": 31.2,
        "avg_input_tokens": 100_000,
        "avg_output_tokens": 2_000,
    }
    assert drivers["failed_requests"] == {"requests": 1, "cost_usd": 0.00, "share_pct": 0.0}

    latency = {m["model"]: m for m in results_a["latency_percentiles"]["models"]}
    # gpt-4o chat latencies 100..1000 ms: linear interpolation gives p50 550, p90 910, p95 955, p99 991.
    assert (
        latency["gpt-4o"]["measured"],
        latency["gpt-4o"]["p50_ms"],
        latency["gpt-4o"]["p90_ms"],
        latency["gpt-4o"]["p95_ms"],
        latency["gpt-4o"]["p99_ms"],
    ) == (10, 550.0, 910.0, 955.0, 991.0)
    assert latency["gpt-4o-mini"]["error_rate_pct"] == 50.0 and latency["gpt-4o-mini"]["p50_ms"] is None


def test_prompt_caching(results_a: dict[str, Any]) -> None:
    """gpt-4o: 2 windows x 80,000 written at input (2.50) + 8 x 80,000 read at 1.25 = 0.40 + 0.80 = 1.20 instead
    of 800,000 x 2.50 = 2.00: saves 0.80 (x15 = 12.00). sonnet: writes 2 x 50,000 x 3.75 = 0.375 + reads
    4 x 50,000 x 0.30 = 0.06 -> 0.435 instead of 300,000 x 3.00 = 0.90: saves 0.465 (x15 = 6.975)."""
    caching = results_a["caching_opportunity"]
    models = {m["model"]: m for m in caching["models"]}
    assert {
        k: (
            m["requests"],
            m["cache_reads"],
            m["hit_rate_pct"],
            m["cacheable_tokens"],
            m["current_cost_usd"],
            m["cached_cost_usd"],
            m["savings_usd"],
            m["monthly_savings_usd"],
            m["monthly_savings_background_usd"],
        )
        for k, m in models.items()
    } == {
        "gpt-4o": (10, 8, 80.0, 800_000, 2.00, 1.20, 0.80, 12.00, 0.00),
        "claude-sonnet-4-5": (6, 4, 66.7, 300_000, 0.90, 0.44, 0.47, 6.98, 6.98),
    }
    assert models["claude-sonnet-4-5"]["cache_mode"] == "explicit" and models["gpt-4o"]["cache_mode"] == "automatic"
    assert caching["savings_usd"] == 1.27 and caching["monthly_savings_usd"] == 18.98


def test_caching_respects_minimum_prefix_and_write_premium(intel_db: Any, user_id: str) -> None:
    """A prefix under the provider's minimum is not cacheable; on Anthropic a prefix read by nobody within its
    lifetime only pays the write premium, so it is not recommended."""
    datasets.load(
        intel_db,
        user_id,
        [
            datasets.row(
                "short-1", "2025-05-01T10:00:00Z", "claude-haiku-4-5", 10_000, 10, prefix_hash="p", prefix_tokens=4_000
            ),  # haiku 4.5 caches from 4,096 tokens
            datasets.row(
                "short-2", "2025-05-01T10:01:00Z", "claude-haiku-4-5", 10_000, 10, prefix_hash="p", prefix_tokens=4_000
            ),
            datasets.row(
                "lonely-1",
                "2025-05-01T11:00:00Z",
                "claude-sonnet-4-5",
                10_000,
                10,
                prefix_hash="q",
                prefix_tokens=5_000,
            ),
            datasets.row(
                "lonely-2",
                "2025-05-01T12:00:00Z",
                "claude-sonnet-4-5",
                10_000,
                10,
                prefix_hash="q",
                prefix_tokens=5_000,
            ),
        ],
    )
    caching = Toolbox(intel_db, user_id, use_rollups=False).call("caching_opportunity")
    assert caching["models"] == [] and caching["monthly_savings_usd"] == 0.0
    assert caching["below_minimum"] == [{"model": "claude-haiku-4-5", "requests": 2, "min_cacheable_tokens": 4096}]


def test_duplicates_batch_rightsizing_trimming_long_context(results_a: dict[str, Any]) -> None:
    dup = results_a["duplicate_requests"]
    # 4 identical classify requests cost 4 x 0.1251 = 0.5004; 3 of 4 served from cache: 0.3753 (x15 = 5.6295)
    assert dup["models"] == [
        {"model": "gpt-4o", "groups": 1, "requests": 4, "repeats": 3, "savings_usd": 0.38, "monthly_savings_usd": 5.63}
    ]

    batch = results_a["batch_opportunity"]
    # sonnet background 2.16 at 50 % = 1.08 saved (x15 = 16.20); 4o-mini 0.00312 -> 0.00156 (x15 = 0.0234)
    assert [
        (
            m["model"],
            m["requests"],
            m["current_cost_usd"],
            m["batch_cost_usd"],
            m["savings_usd"],
            m["monthly_savings_usd"],
            m["stacks_with_cache"],
        )
        for m in batch["models"]
    ] == [("claude-sonnet-4-5", 6, 2.16, 1.08, 1.08, 16.20, True), ("gpt-4o-mini", 2, 0.00, 0.00, 0.00, 0.02, False)]
    assert batch["background_requests"] == 8 and batch["unknown_interactive_requests"] == 1
    assert batch["monthly_savings_usd"] == 16.22

    sizing = results_a["model_rightsizing"]
    # classify on gpt-5-nano: 20 x (50,000 x 0.05 + 10 x 0.40) / 1e6 = 0.05008; saves 2.45192 (x15 = 36.7788)
    assert sizing["checked_segments"] == 2
    [candidate] = sizing["candidates"]
    assert {
        k: candidate[k]
        for k in (
            "model",
            "feature",
            "kind",
            "requests",
            "avg_output_tokens",
            "target_model",
            "current_cost_usd",
            "target_cost_usd",
            "savings_usd",
            "monthly_savings_usd",
            "quality_risk",
        )
    } == {
        "model": "gpt-4o",
        "feature": "classify",
        "kind": "classification",
        "requests": 20,
        "avg_output_tokens": 10,
        "target_model": "gpt-5-nano",
        "current_cost_usd": 2.50,
        "target_cost_usd": 0.05,
        "savings_usd": 2.45,
        "monthly_savings_usd": 36.78,
        "quality_risk": "low",
    }

    trimming = results_a["output_trimming"]
    # 25 % of output cost: summarize 0.36 -> 0.09 (1.35/month), chat 0.20 -> 0.05 (0.75), rag 0.03 -> 0.0075 (0.1125)
    assert [
        (c["feature"], c["output_cost_usd"], c["savings_usd"], c["monthly_savings_usd"], c["suggested_max_tokens"])
        for c in trimming["candidates"]
    ] == [("summarize", 0.36, 0.09, 1.35, 6000), ("chat", 0.20, 0.05, 0.75, 3000), ("rag", 0.03, 0.01, 0.11, 1500)]

    long_context = results_a["long_context"]
    # base tier: 2 x (250,000 x 1.25 + 1,000 x 10) / 1e6 = 0.645; premium paid 1.28 - 0.645 = 0.635 (x15 = 9.525)
    assert long_context["models"] == [
        {
            "model": "gemini-2.5-pro",
            "threshold_tokens": 200_000,
            "requests": 2,
            "avg_prompt_tokens": 250_000,
            "current_cost_usd": 1.28,
            "base_tier_cost_usd": 0.65,
            "savings_usd": 0.64,
            "monthly_savings_usd": 9.53,
        }
    ]


def test_ranking_and_what_if(results_a: dict[str, Any]) -> None:
    """score = monthly savings / (effort weight x risk weight), low 1, medium 2, high 3."""
    ranked = recommendations.rank(recommendations.build(results_a))
    assert [
        (r["id"], r["monthly_savings_usd"], r["effort"], r["risk"], r["score"]) for r in ranked["recommendations"]
    ] == [
        ("rightsizing:gpt-4o:classify", 36.78, "low", "low", 36.78),
        ("prompt_caching:gpt-4o", 12.00, "low", "low", 12.00),
        ("batch:claude-sonnet-4-5", 16.20, "medium", "low", 8.10),
        ("prompt_caching:claude-sonnet-4-5", 6.98, "low", "low", 6.98),
        ("response_cache:gpt-4o", 5.63, "medium", "low", 2.82),
        ("long_context:gemini-2.5-pro", 9.53, "high", "medium", 1.59),
        ("output_trimming:claude-sonnet-4-5:summarize", 1.35, "low", "medium", 0.68),
        ("output_trimming:gpt-4o:chat", 0.75, "low", "medium", 0.38),
        ("output_trimming:gemini-2.5-pro:rag", 0.11, "low", "medium", 0.06),
        ("batch:gpt-4o-mini", 0.02, "medium", "low", 0.01),
    ]
    assert "monthly_savings_usd" not in ranked  # stand-alone figures do not add up: the plan gives the total

    # The savings plan, hand-computed per segment in ORDER (period figures; monthly = x 15):
    #   gpt-4o chat      trimming 20,000 out x 10 x 25 % = 0.05; caching 0.80 (input untouched)      -> 0.85
    #   gpt-4o classify  response cache 3 x 0.1251 = 0.3753; the 17 left move to gpt-5-nano:
    #                    2.502 - 0.3753 - 17 x 0.002504 (= 0.042568) = 2.084132 (31.26, alone 36.78)  -> 2.459432
    #   sonnet summarize trimming 0.09; caching 0.465; batch halves the rest (stacks): 1.605 / 2 = 0.8025
    #                    (12.04, alone 16.20)                                                          -> 1.3575
    #   gemini rag       long context 0.635; trimming then at the base output rate: 2,000 x 10 x 25 %
    #                    = 0.005 (0.08, alone 0.11)                                                    -> 0.64
    #   4o-mini extract  batch 0.00156                                                                 -> 0.00156
    # total 5.308492 x 15 = 79.62738 -> 79.63; baseline 129.6768 -> optimized 50.04942 -> 50.05; 61.4 %.
    plan = savings_plan(results_a["plan_segments"], ranked["recommendations"])
    assert (
        plan["baseline_monthly_usd"],
        plan["optimized_monthly_usd"],
        plan["monthly_savings_usd"],
        plan["savings_pct"],
    ) == (129.68, 50.05, 79.63, 61.4)
    steps = {
        s["id"]: (s["step"], s["standalone_monthly_usd"], s["marginal_monthly_usd"], s["status"]) for s in plan["steps"]
    }
    assert steps == {
        "response_cache:gpt-4o": (1, 5.63, 5.63, "in plan"),
        "rightsizing:gpt-4o:classify": (2, 36.78, 31.26, "in plan"),
        "long_context:gemini-2.5-pro": (3, 9.53, 9.53, "in plan"),
        "output_trimming:claude-sonnet-4-5:summarize": (4, 1.35, 1.35, "in plan"),
        "output_trimming:gpt-4o:chat": (4, 0.75, 0.75, "in plan"),
        "output_trimming:gemini-2.5-pro:rag": (4, 0.11, 0.08, "in plan"),
        "prompt_caching:gpt-4o": (5, 12.00, 12.00, "in plan"),
        "prompt_caching:claude-sonnet-4-5": (5, 6.98, 6.98, "in plan"),
        "batch:claude-sonnet-4-5": (6, 16.20, 12.04, "in plan"),
        "batch:gpt-4o-mini": (6, 0.02, 0.02, "in plan"),
    }
    # Each stand-alone figure of the plan is the tool's own figure.
    assert {r["id"]: r["monthly_savings_usd"] for r in ranked["recommendations"]} == {k: v[1] for k, v in steps.items()}
    # gpt-4o 0.85 + 2.459432 = 3.309432 (x15 = 49.64); sonnet 1.3575 (20.36); gemini 0.64 (9.60); 4o-mini 0.02.
    assert {m["model"]: m["monthly_savings_usd"] for m in plan["by_model"]} == {
        "gpt-4o": 49.64,
        "claude-sonnet-4-5": 20.36,
        "gemini-2.5-pro": 9.60,
        "gpt-4o-mini": 0.02,
    }

    # The what-if grows the plan's figures: month k x 1.1^(k - 1); 79.63 x 1.1 = 87.593, x 1.21 = 96.3523.
    what_if = recommendations.what_if(results_a["plan_segments"], ranked["recommendations"], None, 10.0, 3)
    assert (
        what_if["baseline_monthly_usd"],
        what_if["optimized_monthly_usd"],
        what_if["monthly_savings_usd"],
        what_if["savings_pct"],
    ) == (129.68, 50.05, 79.63, 61.4)
    assert [(p["month"], p["baseline_usd"], p["optimized_usd"], p["savings_usd"]) for p in what_if["projection"]] == [
        (1, 129.68, 50.05, 79.63),
        (2, 142.65, 55.06, 87.59),
        (3, 156.91, 60.56, 96.35),
    ]
    assert what_if["horizon_savings_usd"] == 263.57

    only = recommendations.what_if(
        results_a["plan_segments"], ranked["recommendations"], ["prompt_caching:gpt-4o"], 0.0, 1
    )
    assert only["monthly_savings_usd"] == 12.00 and only["optimized_monthly_usd"] == 117.68
    with pytest.raises(ValueError, match="unknown recommendation"):
        recommendations.what_if(results_a["plan_segments"], ranked["recommendations"], ["nope"])


def test_batch_does_not_stack_with_caching_where_forbidden(intel_db: Any, user_b: str) -> None:
    """Dataset B (1 day, x30), gpt-4.1 (OpenAI: batch and caching discounts do not stack).
    nightly: 4 x (50,000 x 2.00 + 1,000 x 8.00) / 1e6 = 0.432; batch 0.216, saves 6.48/month. Caching: one window,
    writes 40,000 x 2.00 + reads 120,000 x 0.50 = 0.14 instead of 0.32: saves 0.18 (5.40/month), all background.
    cached_job: 10,000 x 2.00 + 90,000 cached x 0.50 = 0.065 today; at batch prices its cached tokens would be
    billed at the batch input rate 1.00: 0.01 + 0.09 = 0.10 > 0.065, so it is not a batch candidate."""
    toolbox = Toolbox(intel_db, user_b, use_rollups=False)
    results = {n: toolbox.call(n, a) for n, a in FULL_ANALYSIS if n != "cost_breakdown"}
    batch = results["batch_opportunity"]
    assert [
        (
            m["model"],
            m["requests"],
            m["current_cost_usd"],
            m["batch_cost_usd"],
            m["monthly_savings_usd"],
            m["stacks_with_cache"],
        )
        for m in batch["models"]
    ] == [("gpt-4.1", 4, 0.43, 0.22, 6.48, False)]
    assert [s["feature"] for s in batch["top_segments"]] == ["nightly"]
    caching = results["caching_opportunity"]["models"]
    assert [
        (m["model"], m["cache_reads"], m["monthly_savings_usd"], m["monthly_savings_background_usd"]) for m in caching
    ] == [("gpt-4.1", 3, 5.40, 5.40)]
    assert results["usage_overview"]["monthly_cost_usd"] == 14.91

    recs = recommendations.rank(recommendations.build(results))["recommendations"]
    both = recommendations.what_if(results["plan_segments"], recs, ["prompt_caching:gpt-4.1", "batch:gpt-4.1"])
    # Alternatives on nightly: caching alone 0.432 - 0.18 = 0.252, batch alone 0.216, both = batch alone (the
    # cached tokens would be billed at the batch input rate): batch is kept, caching left out.
    assert both["monthly_savings_usd"] == 6.48 and both["optimized_monthly_usd"] == 8.43
    # With output trimming first: nightly output 4,000 x 8 x 25 % = 0.008 (0.24); the batch then halves
    # 0.424: 0.212 (6.36). Total 0.22 x 30 = 6.60 of 14.91 (44.3 %).
    plan = savings_plan(results["plan_segments"], recs)
    assert (plan["monthly_savings_usd"], plan["savings_pct"]) == (6.60, 44.3)
    steps = {s["id"]: (s["standalone_monthly_usd"], s["marginal_monthly_usd"], s["status"]) for s in plan["steps"]}
    assert steps == {
        "output_trimming:gpt-4.1:nightly": (0.24, 0.24, "in plan"),
        "prompt_caching:gpt-4.1": (5.40, 0.00, "left out"),
        "batch:gpt-4.1": (6.48, 6.36, "in plan"),
    }
    [note] = next(s["notes"] for s in plan["steps"] if s["id"] == "prompt_caching:gpt-4.1")
    assert note == (
        "left out on nightly on gpt-4.1: batch saves more there, and openai gives no cache discount on batch requests"
    )
    every = recommendations.what_if(results["plan_segments"], recs)
    assert every["monthly_savings_usd"] == 6.60 and every["savings_pct"] == 44.3


def test_final_report_states_the_reference_figures(intel_db: Any, user_a: str) -> None:
    """The pipeline's markdown report carries the same figures, formatted, in its tables."""
    ctx = TestRunContext(intel_db, user_a, "How can we cut our LLM costs?")
    answer = run(ctx)
    text = answer.content
    snapshot = current_snapshot()
    for expected in (
        "$8.65",
        "$129.68",
        "| 1 | Route classify traffic from gpt-4o to gpt-5-nano | $36.78 | $31.26 | low | low |",
        "| 2 | Cache the repeated prompt prefixes on gpt-4o | $12.00 | $12.00 | low | low |",
        "from $129.68 to $50.05 (61.4% less)",
        "### The plan: $79.63 per month",
        "| 2 | Route classify traffic from gpt-4o to gpt-5-nano | $36.78 | $31.26 | in plan |",
        "| `gpt-4o` | 30 | $5.20 | $78.03 | 60.2% |",
        "| chat | 10 | $2.70 | $40.50 | 31.2% |",
        "8 of 10 requests would read a cached prefix (80.0%)",
        "| `gpt-4o` | 10 | 550.0 ms | 910.0 ms | 955.0 ms | 991.0 ms | 0.0% |",
        "1 record(s) had no known price (tokens counted, cost unknown): `acme-llm-1`.",
        f"Prices: list prices from genai-prices {snapshot.version}, price data of {snapshot.data_date}; each call "
        "is priced at the price in force on its day (UTC).",
    ):
        assert expected in text, expected
    assert answer.metadata["route"] == "report" and answer.metadata["intent"] == "full_analysis"
    # The only total stated is the plan's: not the sum of the stand-alone figures (89.35), not the old
    # independent-fractions what-if (75.78).
    assert "$79.63" in text and "$89.35" not in text and "$75.78" not in text


def test_each_call_is_priced_at_the_price_in_force_on_its_day(intel_db: Any, user_id: str) -> None:
    """o3 (genai-prices): 10 / 40 per million until 2025-06-09, 2 / 8 from 2025-06-10. Two identical background
    calls of 1,000,000 input tokens, one each side of the change: 10.00 + 2.00 = 12.00 (x15 a month = 180.00),
    in SQL (overview, by day) and in Python (batch: half of each, 6.00 -> 90.00; the response cache answers half
    of the pair at each day's price, 6.00 -> 90.00). Plan: the response cache leaves 5.00 + 1.00, batch halves
    it: 6.00 + 3.00 = 9.00 (135.00), where the stand-alone figures add up to the whole bill (180.00)."""
    rows = [
        datasets.row(f"o3-{d}", f"2025-06-{d}T12:00:00Z", "o3", 1_000_000, 0, interactive=False, request_hash="same")
        for d in ("09", "10")
    ]
    datasets.load(intel_db, user_id, rows)
    toolbox = Toolbox(intel_db, user_id, use_rollups=False)
    results = {(f"{n}:{a['by']}" if "by" in a else n): toolbox.call(n, a) for n, a in FULL_ANALYSIS}
    assert results["usage_overview"]["total_cost_usd"] == 12.00
    assert results["usage_overview"]["monthly_cost_usd"] == 180.00
    assert [(r["key"], r["cost_usd"]) for r in results["cost_breakdown:day"]["rows"]] == [
        ("2025-06-09", 10.00),
        ("2025-06-10", 2.00),
    ]
    assert results["batch_opportunity"]["monthly_savings_usd"] == 90.00
    assert results["duplicate_requests"]["monthly_savings_usd"] == 90.00
    ranked = recommendations.rank(recommendations.build(results))
    plan = savings_plan(results["plan_segments"], ranked["recommendations"])
    assert {s["id"]: (s["standalone_monthly_usd"], s["marginal_monthly_usd"]) for s in plan["steps"]} == {
        "response_cache:o3": (90.00, 90.00),
        "batch:o3": (90.00, 45.00),
    }
    assert plan["monthly_savings_usd"] == 135.00


def test_rightsizing_fits_the_input_limit_not_the_window(intel_db: Any, user_id: str) -> None:
    """gpt-4.1 classification with 300,000-token prompts: the GPT-5 family's 400,000-token window is input plus
    output and takes at most 272,000 input tokens (overlay max_input_tokens), so the economy target is
    gpt-4.1-nano, not the cheaper gpt-5-nano. 10 x (300,000 x 2.00 + 10 x 8.00) = 6.0008 on gpt-4.1, 10 x
    (300,000 x 0.10 + 10 x 0.40) = 0.30004 on gpt-4.1-nano: saves 5.70076 (x30 = 171.02)."""
    rows = [
        datasets.row(f"big-{k}", f"2025-05-01T10:{k:02d}:00Z", "gpt-4.1", 300_000, 10, feature="triage")
        for k in range(10)
    ]
    datasets.load(intel_db, user_id, rows)
    [candidate] = Toolbox(intel_db, user_id, use_rollups=False).call("model_rightsizing")["candidates"]
    assert (candidate["target_model"], candidate["monthly_savings_usd"]) == ("gpt-4.1-nano", 171.02)
