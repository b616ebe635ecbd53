"""Triage and routing on realistic questions: with and without data, off topic, ambiguous; the model's JSON
when it gives one, the keyword fallback when it fails; the events every step emits."""

from __future__ import annotations

from typing import Any

import pytest

from functions.agent.intelligence.pipeline import OFF_TOPIC, run
from functions.agent.intelligence.triage import keyword_triage, parse_llm_answer, sufficiency
from functions.agent.llm.chain import LLMUnavailable
from functions.agent.pipeline_api import RunCancelled
from tests.intelligence import datasets
from tests.intelligence.conftest import make_user
from tests.intelligence.harness import ScriptedLLM, TestRunContext

QUESTIONS = [
    ("How can I reduce my OpenAI bill?", "full_analysis", {}),
    ("Give me a full report on our LLM spend", "full_analysis", {}),
    ("Analyse our LLM usage please", "full_analysis", {}),
    ("We're burning money on GPT-4o, what should we do to save?", "full_analysis", {"models": ["gpt-4o"]}),
    ("Where is our money going, by feature?", "cost_breakdown", {"by": "feature"}),
    ("Which customers cost us the most? Show spend per user", "cost_breakdown", {"by": "end_user"}),
    ("What did we spend per day last week?", "cost_breakdown", {"by": "day"}),
    ("Can we cache the system prompt?", "caching", {}),
    ("Are we sending duplicate requests?", "caching", {}),
    ("Could the nightly summarization jobs run as batch?", "batch", {}),
    ("Should we move classification to gpt-4o-mini?", "model_choice", {"models": ["gpt-4o-mini"]}),
    ("Is claude-opus-4-5 overkill for our extraction step?", "model_choice", {"models": ["claude-opus-4-5"]}),
    ("Which model is slow? p95 latency please", "latency", {}),
    ("What if usage grows 20% per month for 6 months?", "what_if", {"growth_pct_per_month": 20.0, "months": 6}),
    ("Forecast our costs if traffic doubles", "what_if", {"growth_pct_per_month": 100.0}),
    ("What does claude-sonnet-4-5 cost per million tokens?", "pricing", {"models": ["claude-sonnet-4-5"]}),
    ("Compare prices of gemini-2.5-flash and gpt-5-mini", "pricing", {"models": ["gemini-2.5-flash", "gpt-5-mini"]}),
    ("How do I upload my LiteLLM spend logs?", "data_upload", {}),
    ("What file format do you accept?", "data_upload", {}),
    ("Generate some sample data so I can try it", "generate_data", {}),
    ("/generate rag_search days=3 seed=7", "generate_data", {"profile": "rag_search", "days": 3, "seed": 7}),
    ("hi", "ambiguous", {}),
    ("help me", "ambiguous", {}),
    ("tokens?", "ambiguous", {}),
    ("What is the capital of France?", "off_topic", {}),
    ("Write me a poem about the sea", "off_topic", {}),
]


@pytest.mark.parametrize(("question", "intent", "entities"), QUESTIONS)
def test_keyword_triage(question: str, intent: str, entities: dict[str, Any]) -> None:
    result = keyword_triage(question)
    assert result.intent == intent, (question, result)
    for key, value in entities.items():
        assert result.entities.get(key) == value, (question, result.entities)


def test_model_json_is_used_and_checked() -> None:
    answer = 'Sure: {"intent": "latency", "models": ["GPT-4o", "not-a-model"], "months": 99, "by": "model"}'
    result = parse_llm_answer(answer, "how quick are we")
    assert (result.intent, result.source, result.entities) == ("latency", "llm", {"models": ["gpt-4o"], "by": "model"})
    for bad in ("no json here", '{"intent": "world_domination"}', "{broken"):
        with pytest.raises(ValueError):
            parse_llm_answer(bad, "x")


def test_sufficiency_names_exactly_the_missing_fields() -> None:
    overview = {
        "records": 10,
        "coverage_pct": {
            "prefix_hash": 0.0,
            "prefix_tokens": 0.0,
            "request_hash": 50.0,
            "interactive": 0.0,
            "latency_ms": 100.0,
        },
    }
    assert sufficiency("latency", overview) == {"level": "sufficient", "missing": {}}
    batch = sufficiency("batch", overview)
    assert batch["level"] == "insufficient" and list(batch["missing"]) == ["interactive"]
    caching = sufficiency("caching", overview)
    assert caching["level"] == "partial" and list(caching["missing"]) == ["prefix_hash", "prefix_tokens"]
    full = sufficiency("full_analysis", overview)
    assert full["level"] == "partial" and list(full["missing"]) == ["prefix_hash", "prefix_tokens", "interactive"]
    assert sufficiency("cost_breakdown", {"records": 0})["level"] == "none"


@pytest.fixture(scope="module")
def data_user(intel_db: Any) -> str:
    user = make_user(intel_db)
    datasets.load(intel_db, user, datasets.dataset_a())
    return user


def tools(ctx: TestRunContext) -> list[str]:
    return [r["tool"] for r in ctx.tool_results]


def test_without_data_the_data_helper_asks_for_it(intel_db: Any, user_id: str) -> None:
    ctx = TestRunContext(intel_db, user_id, "How can we cut our LLM costs?")
    answer = run(ctx)
    assert answer.metadata["route"] == "data_helper" and answer.metadata["sufficiency"]["level"] == "none"
    assert tools(ctx) == ["usage_overview", "accepted_formats"]
    text = answer.content
    assert "your account has none yet" in text and "POST /api/usage" in text
    for fmt in ("**netra**", "**litellm**", "**openai**", "`/generate support_chatbot`", "```json"):
        assert fmt in text
    # live ingestion instead of files (issue 19)
    for live in ("`POST /v1/traces`", "`POST /v1/litellm`", "POST /api/ingest/keys", "`docs/INGESTION.md`"):
        assert live in text


def test_with_data_the_full_pipeline_runs(intel_db: Any, data_user: str) -> None:
    ctx = TestRunContext(intel_db, data_user, "How can we cut our LLM costs?")
    answer = run(ctx)
    assert answer.metadata["route"] == "report"
    assert ctx.agents_started() == ["triage", "data", "optimization", "actions", "reporting"]
    assert (ctx.events[0].type, ctx.events[0].agent_name) == ("agent_thinking", "supervisor")
    assert tools(ctx) == [
        "usage_overview",
        "cost_breakdown",
        "cost_breakdown",
        "cost_breakdown",
        "cost_breakdown",
        "cost_drivers",
        "latency_percentiles",
        "duplicate_requests",
        "caching_opportunity",
        "batch_opportunity",
        "model_rightsizing",
        "output_trimming",
        "long_context",
        "plan_segments",
        "rank_recommendations",
        "savings_plan",
        "what_if",
        "action_plans",
    ]
    executing = [e for e in ctx.events if e.type == "tool_executing"]
    completed = [e for e in ctx.events if e.type == "tool_completed"]
    assert len(executing) == len(completed) == len(ctx.tool_results)
    assert [e.data["call_id"] for e in executing] == [e.data["call_id"] for e in completed]
    assert any(e.type == "partial_result" for e in ctx.events)
    assert [c["purpose"] for c in ctx.llm.calls] == ["triage", "analysis"]
    # The mock never answers JSON: the keyword fallback decided, and said so.
    assert answer.metadata["triage"]["source"] == "keywords" and answer.metadata["triage"]["fallback_reason"]


@pytest.mark.parametrize(
    ("question", "route", "tools_run"),
    [
        ("What is the capital of France?", "off_topic", []),
        ("hi", "clarify", ["usage_overview"]),
        ("What does claude-sonnet-4-5 cost per million tokens?", "pricing", ["price_lookup"]),
        (
            "Which model is slow? p95 latency please",
            "report",
            ["usage_overview", "cost_breakdown", "latency_percentiles"],
        ),
        (
            "Where is our money going, by feature?",
            "report",
            ["usage_overview", "cost_breakdown", "cost_breakdown", "cost_breakdown", "cost_breakdown", "cost_drivers"],
        ),
        ("How do I upload my LiteLLM spend logs?", "data_helper", ["usage_overview", "accepted_formats"]),
    ],
)
def test_routes_with_data(intel_db: Any, data_user: str, question: str, route: str, tools_run: list[str]) -> None:
    ctx = TestRunContext(intel_db, data_user, question)
    answer = run(ctx)
    assert answer.metadata["route"] == route
    assert tools(ctx) == tools_run
    if route == "off_topic":
        assert answer.content == OFF_TOPIC
    if route == "clarify":
        assert "41 usage records from 2025-03-01 to 2025-03-02" in answer.content
    if route == "pricing":
        assert "| `claude-sonnet-4-5` | anthropic | premium | $3.00 | $0.30 | $15.00 | $1.50 |" in answer.content


def test_partial_data_gets_exactly_the_missing_fields(intel_db: Any, user_id: str) -> None:
    """Records without prefix or request hashes: a caching question is answered by the data helper, which
    names exactly those fields; a latency question names only latency_ms."""
    datasets.load(
        intel_db, user_id, [datasets.row(f"r{i}", "2025-05-01T10:00:00Z", "gpt-4o", 1000, 10) for i in range(3)]
    )
    caching = run(TestRunContext(intel_db, user_id, "Can we cache the system prompt?"))
    assert caching.metadata["route"] == "data_helper"
    assert list(caching.metadata["sufficiency"]["missing"]) == ["prefix_hash", "prefix_tokens", "request_hash"]
    for field in ("`prefix_hash`:", "`prefix_tokens`:", "`request_hash`:"):
        assert field in caching.content
    latency = run(TestRunContext(intel_db, user_id, "What is our p95 latency?"))
    assert list(latency.metadata["sufficiency"]["missing"]) == ["latency_ms"]
    assert "`latency_ms`:" in latency.content and "`prefix_hash`:" not in latency.content
    full = run(TestRunContext(intel_db, user_id, "How can we cut our LLM costs?"))
    assert full.metadata["route"] == "report" and full.metadata["sufficiency"]["level"] == "partial"
    assert "Add `interactive` to your records" in full.content


def test_model_answer_routes_when_valid(intel_db: Any, data_user: str) -> None:
    llm = ScriptedLLM(['{"intent": "batch", "models": [], "growth_pct_per_month": null}', "Batch it."])
    ctx = TestRunContext(intel_db, data_user, "Something about background jobs", llm=llm)
    answer = run(ctx)
    assert answer.metadata["triage"]["source"] == "llm" and answer.metadata["intent"] == "batch"
    assert "batch_opportunity" in tools(ctx)


def test_model_failure_falls_back_to_keywords_and_template(intel_db: Any, data_user: str) -> None:
    """Every model call fails (LLMUnavailable): triage uses keywords, the narrative is templated, the report
    is complete."""
    down = LLMUnavailable(["mock:mock-pro: HTTP 503", "mock:mock-flash: HTTP 503"])
    ctx = TestRunContext(intel_db, data_user, "How can we cut our LLM costs?", llm=ScriptedLLM([down, down]))
    answer = run(ctx)
    assert answer.metadata["triage"]["source"] == "keywords"
    assert "LLMUnavailable" in answer.metadata["triage"]["fallback_reason"]
    assert (
        "Start with **route classify traffic from gpt-4o to gpt-5-nano**: on its own it saves $36.78 per month"
        in answer.content
    )
    # The templated total is the savings plan's (hand-computed in test_reference), not a sum of the above.
    assert (
        "Applied together, each on the traffic the previous ones leave, the 10 recommendations in the plan below "
        "save $79.63 per month." in answer.content
    )


def test_cancel_between_steps(intel_db: Any, data_user: str) -> None:
    ctx = TestRunContext(intel_db, data_user, "How can we cut our LLM costs?", cancel_after_checks=4)
    with pytest.raises(RunCancelled):
        run(ctx)
    assert len(ctx.tool_results) < 5


def test_the_model_alone_cannot_load_sample_data(intel_db: Any, user_id: str) -> None:
    """Sample rows go into an account only on the user's explicit ask; a model reading "generate_data" into an
    ordinary question gets the data helper instead."""
    llm = ScriptedLLM(['{"intent": "generate_data"}'])
    answer = run(TestRunContext(intel_db, user_id, "How do I get started?", llm=llm))
    assert answer.metadata["route"] == "data_helper" and "generated" not in answer.metadata
    assert intel_db.scalar("SELECT count(*) FROM usage_records WHERE user_id = %s", [user_id]) == 0


def test_breakdown_by_provider(intel_db: Any, data_user: str) -> None:
    answer = run(TestRunContext(intel_db, data_user, "Show me the spend by provider"))
    assert "### Spend by provider" in answer.content
    assert "| openai | 32 | $5.21 | $78.08 | 60.2% |" in answer.content
