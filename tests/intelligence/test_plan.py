"""The savings plan on small datasets priced by hand, one per interaction between recommendations.

Each dataset spans one day, so monthly = period x 30. List prices per million tokens (shared/pricing):
claude-sonnet-4-5 input 3.00, cache read 0.30, cache write 3.75, output 15.00, minimum prefix 1,024, batch 50 %
(stacks with caching); claude-haiku-4-5 input 1.00, output 5.00, minimum prefix 4,096; gpt-4.1 input 2.00,
output 8.00, batch 50 %; gpt-4o input 2.50, cache read 1.25 (writes at input), output 10.00, minimum 1,024.
"""

from __future__ import annotations

from typing import Any

from functions.agent.intelligence import recommendations
from functions.agent.intelligence.plan import savings_plan
from functions.agent.intelligence.toolbox import FULL_ANALYSIS, Toolbox
from tests.intelligence import datasets
from tests.intelligence.conftest import make_user


def plan_for(db: Any, rows: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    user = make_user(db)
    datasets.load(db, user, rows)
    toolbox = Toolbox(db, user, use_rollups=False)
    results = {(f"{n}:{a['by']}" if "by" in a else n): toolbox.call(n, a) for n, a in FULL_ANALYSIS}
    ranked = recommendations.rank(recommendations.build(results))
    return results, savings_plan(results["plan_segments"], ranked["recommendations"])


def steps(plan: dict[str, Any]) -> dict[str, tuple[float, float, str]]:
    return {s["id"]: (s["standalone_monthly_usd"], s["marginal_monthly_usd"], s["status"]) for s in plan["steps"]}


def requests(prefix: str, model: str, feature: str, hour: int, n: int, tokens: int, out: int, **extra: Any) -> list:
    """n requests 20 s apart from hour:00:00 (one 5-minute cache window), interactive unless said otherwise."""
    return [
        datasets.row(
            f"{prefix}-{k}",
            f"2025-06-01T{hour:02d}:{(20 * k) // 60:02d}:{(20 * k) % 60:02d}Z",
            model,
            tokens,
            out,
            feature=feature,
            **{"interactive": True, **extra},
        )
        for k in range(n)
    ]


def test_rightsizing_that_makes_caching_impossible(intel_db: Any) -> None:
    """claude-sonnet-4-5, two classification features (10-token answers) in one cache window each; the
    right-sizing target claude-haiku-4-5 caches only prefixes of 4,096 tokens or more.

    tag:   10 x (10,000 in, 10 out), prefix 2,000. Sonnet 10 x 0.03015 = 0.3015; haiku 10 x 0.01005 = 0.1005
           (right-sizing alone 0.201 -> 6.03). Caching on sonnet: write 2,000 x 3.75 + read 18,000 x 0.30 =
           0.0129 instead of 20,000 x 3.00 = 0.06: 0.0471. Sonnet cached 0.2544 > haiku 0.1005: moves, and its
           prefix (2,000 < 4,096) cannot be cached on haiku: caching adds nothing there.
    route: 10 x (4,000 in, 10 out), prefix 4,000. Sonnet 0.1215; haiku 0.0405 (alone 0.081 -> 2.43). Caching on
           sonnet: 4,000 x 3.75 + 36,000 x 0.30 = 0.0258 instead of 0.12: 0.0942. Sonnet cached 0.0273 < haiku
           0.0405 (4,000 < 4,096: no caching there): stays on sonnet, right-sizing left out.
    Caching alone 0.0471 + 0.0942 = 0.1413 (4.24); in the plan only route's 0.0942 (2.83).
    Plan 0.201 + 0.0942 = 0.2952 -> 8.856 -> 8.86 of 0.423 x 30 = 12.69; the stand-alone sum 12.70 exceeds the
    whole bill.
    """
    rows = requests("tag", "claude-sonnet-4-5", "tag", 9, 10, 10_000, 10, prefix_hash="p-tag", prefix_tokens=2_000)
    rows += requests("rt", "claude-sonnet-4-5", "route", 10, 10, 4_000, 10, prefix_hash="p-rt", prefix_tokens=4_000)
    results, plan = plan_for(intel_db, rows)
    assert results["usage_overview"]["monthly_cost_usd"] == 12.69
    assert steps(plan) == {
        "rightsizing:claude-sonnet-4-5:tag": (6.03, 6.03, "in plan"),
        "rightsizing:claude-sonnet-4-5:route": (2.43, 0.00, "left out"),
        "prompt_caching:claude-sonnet-4-5": (4.24, 2.83, "partly"),
    }
    assert (plan["monthly_savings_usd"], plan["optimized_monthly_usd"]) == (8.86, 3.83)
    notes = {s["id"]: s["notes"] for s in plan["steps"]}
    assert notes["prompt_caching:claude-sonnet-4-5"] == [
        "left out on tag on claude-sonnet-4-5: on claude-haiku-4-5, where the traffic moves, prefixes must have "
        "at least 4,096 tokens to be cached"
    ]
    # route kept: 0.0273 x 30 = 0.819 -> $0.82 against 0.0405 x 30 = 1.215 -> $1.22 on haiku.
    assert notes["rightsizing:claude-sonnet-4-5:route"] == [
        "left out: keeping claude-sonnet-4-5 for route with the rest of the plan costs $0.82 a month, moving it "
        "to claude-haiku-4-5 $1.22 (its prompts cannot be cached there: claude-haiku-4-5 caches prefixes of at "
        "least 4,096 tokens)"
    ]


def test_batch_plus_trimming_on_one_feature(intel_db: Any) -> None:
    """gpt-4.1 digest, background: 4 x (20,000 in, 2,000 out) = 4 x 0.056 = 0.224 (6.72 a month).
    Trimming alone: output 0.064 x 25 % = 0.016 (0.48); batch alone: 0.112 (3.36). In the plan trimming comes
    first (0.48) and the batch halves what is left: 0.208 / 2 = 0.104 (3.12). Total 0.12 -> 3.60, not 3.84."""
    rows = requests("dg", "gpt-4.1", "digest", 1, 4, 20_000, 2_000, interactive=False)
    results, plan = plan_for(intel_db, rows)
    assert results["usage_overview"]["monthly_cost_usd"] == 6.72
    assert steps(plan) == {
        "output_trimming:gpt-4.1:digest": (0.48, 0.48, "in plan"),
        "batch:gpt-4.1": (3.36, 3.12, "in plan"),
    }
    assert (plan["monthly_savings_usd"], plan["optimized_monthly_usd"]) == (3.60, 3.12)


def test_response_cache_plus_caching_on_one_model(intel_db: Any) -> None:
    """gpt-4o faq: 6 x (10,000 in, 100 out) = 6 x 0.026 = 0.156, one window, prefix 8,000; the first three are
    the same request. Response cache alone: 3 x 0.026 x 2/3 = 0.052 (1.56). Caching alone: write 8,000 x 2.50 +
    read 40,000 x 1.25 = 0.07 instead of 48,000 x 2.50 = 0.12: 0.05 (1.50). In the plan the response cache
    answers 2 of the 3 first, leaving 4 requests: one writes 8,000, three read 24,000: 0.02 + 0.03 = 0.05
    instead of 32,000 x 2.50 = 0.08: 0.03 (0.90). Total 0.082 -> 2.46, not 3.06."""
    rows = requests("faq", "gpt-4o", "faq", 10, 6, 10_000, 100, prefix_hash="p-faq", prefix_tokens=8_000)
    for k, row in enumerate(rows):
        row["request_hash"] = "same" if k < 3 else f"q{k}"
    results, plan = plan_for(intel_db, rows)
    assert results["usage_overview"]["monthly_cost_usd"] == 4.68
    assert steps(plan) == {
        "response_cache:gpt-4o": (1.56, 1.56, "in plan"),
        "prompt_caching:gpt-4o": (1.50, 0.90, "in plan"),
    }
    assert (plan["monthly_savings_usd"], plan["optimized_monthly_usd"]) == (2.46, 2.22)


def test_two_disjoint_features_on_one_model(intel_db: Any) -> None:
    """claude-sonnet-4-5: label (interactive, 10 x (10,000 in, 10 out) = 0.3015) moves to haiku (0.1005):
    0.201 (6.03); report (background, 2 x (10,000 in, 300 out) = 0.069) goes to batch: 0.0345 (1.035 -> 1.04).
    Disjoint traffic: both marginal savings equal their stand-alone ones; total 0.2355 x 30 = 7.065 -> 7.07
    (multiplying fractions of the model's cost, as before, gave 6.51)."""
    rows = requests("lb", "claude-sonnet-4-5", "label", 9, 10, 10_000, 10)
    rows += requests("rp", "claude-sonnet-4-5", "report", 2, 2, 10_000, 300, interactive=False)
    results, plan = plan_for(intel_db, rows)
    assert results["usage_overview"]["monthly_cost_usd"] == 11.12  # 0.3705 x 30 = 11.115
    assert steps(plan) == {
        "rightsizing:claude-sonnet-4-5:label": (6.03, 6.03, "in plan"),
        "batch:claude-sonnet-4-5": (1.04, 1.04, "in plan"),
    }
    assert (plan["monthly_savings_usd"], plan["optimized_monthly_usd"]) == (7.07, 4.05)


def test_plan_inputs_are_storable_in_the_event_log(intel_db: Any) -> None:
    """Tool results are streamed into Firestore, which refuses an array directly inside an array (the plan's
    inputs once held prefix rows as lists: every run failed with 400 "Cannot convert an array value in an
    array value" and was redelivered until its time budget ran out)."""
    rows = requests("faq", "gpt-4o", "faq", 10, 3, 10_000, 100, prefix_hash="p-faq", prefix_tokens=8_000)
    results, plan = plan_for(intel_db, rows)

    def nested_arrays(value: Any, in_array: bool = False) -> int:
        if isinstance(value, dict):
            return sum(nested_arrays(v) for v in value.values())
        if isinstance(value, list):
            return int(in_array) + sum(nested_arrays(v, True) for v in value)
        return 0

    assert results["plan_segments"]["segments"][0]["cache"]  # the prefix rows are there
    assert nested_arrays(results) == 0 and nested_arrays(plan) == 0
