"""The sub-agents the supervisor (pipeline.py) routes between: triage, data helper, data, optimization,
actions and reporting. Each announces itself with ``agent_started``, explains its step with ``agent_thinking``
and runs every deterministic computation through ``ctx.tool`` so that its result is kept and streamed.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from functions.agent.intelligence import actions, figures, recommendations, report, triage
from functions.agent.intelligence.plan import ORDER, savings_plan
from functions.agent.intelligence.toolbox import FULL_ANALYSIS, Toolbox
from functions.agent.pipeline_api import LLMMessage, RunContext
from functions.agent.usage.schema import FIELD_DOCS, REQUIRED
from shared.pricing import get_price, known_models

log = logging.getLogger("agent.intelligence")

TOOLS_BY_INTENT: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "full_analysis": FULL_ANALYSIS,
    "what_if": FULL_ANALYSIS,
    "cost_breakdown": [
        ("cost_breakdown", {"by": "model"}),
        ("cost_breakdown", {"by": "feature"}),
        ("cost_breakdown", {"by": "end_user"}),
        ("cost_breakdown", {"by": "day"}),
        ("cost_drivers", {}),
    ],
    "caching": [
        ("cost_breakdown", {"by": "model"}),
        ("caching_opportunity", {}),
        ("duplicate_requests", {}),
        ("plan_segments", {}),
    ],
    "batch": [("cost_breakdown", {"by": "model"}), ("batch_opportunity", {}), ("plan_segments", {})],
    "model_choice": [
        ("cost_breakdown", {"by": "model"}),
        ("cost_drivers", {}),
        ("model_rightsizing", {}),
        ("plan_segments", {}),
    ],
    "latency": [("cost_breakdown", {"by": "model"}), ("latency_percentiles", {})],
}
OPTIMIZING_INTENTS = ("full_analysis", "what_if", "caching", "batch", "model_choice")


def start(ctx: RunContext, agent: str, step: str, thought: str) -> None:
    ctx.check_cancelled()
    ctx.emit("agent_started", agent, {"step": step})
    ctx.emit("agent_thinking", agent, {"thought": thought})


# -- triage --------------------------------------------------------------------------------------------------
def run_triage(ctx: RunContext) -> triage.Triage:
    start(ctx, "triage", "triage", "Reading the request: what is asked, which models or numbers it names.")
    command = triage.parse_command(ctx.message)
    if command:
        result = command
    else:
        try:
            answer = ctx.llm.complete(
                [LLMMessage("system", triage.TRIAGE_PROMPT), LLMMessage("user", ctx.message)],
                purpose="triage",
                max_tokens=200,
            )
            result = triage.parse_llm_answer(answer.text, ctx.message)
        except Exception as exc:  # the model failed or answered something unusable: keywords decide
            reason = f"{type(exc).__name__}: {str(exc)[:160]}"
            result = triage.keyword_triage(ctx.message, reason)
            ctx.emit(
                "agent_thinking",
                "triage",
                {"thought": "The model's classification was not usable; deciding from keywords.", "fallback": reason},
            )
    ctx.emit("agent_thinking", "triage", {"thought": f"Intent: {result.intent}.", "triage": result.as_dict()})
    return result


# -- data helper -----------------------------------------------------------------------------------------------
def accepted_formats() -> dict[str, Any]:
    limit = int(os.environ.get("MAX_BODY_BYTES", "1048576") or 1048576)
    example = {
        "request_id": "req-0001",
        "timestamp": "2025-11-03T14:05:00Z",
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 2400,
        "cached_input_tokens": 0,
        "cache_write_tokens": 0,
        "output_tokens": 180,
        "reasoning_tokens": 0,
        "latency_ms": 2100,
        "status": "ok",
        "feature": "chat_answer",
        "end_user": "user-42",
        "prefix_hash": "support-system-v3",
        "prefix_tokens": 2000,
        "request_hash": "9f2c1e",
        "max_tokens": 800,
        "interactive": True,
    }
    return {
        "endpoint": "POST /api/usage",
        "formats": {
            "netra": "our schema as JSONL, a JSON array or CSV with a header row",
            "litellm": "LiteLLM proxy spend logs (LiteLLM_SpendLogs rows)",
            "openai": "request logs with a provider usage object (OpenAI, Anthropic, Gemini)",
        },
        "required": list(REQUIRED),
        "fields": FIELD_DOCS,
        "example_jsonl": json.dumps(example),
        "example_csv_header": ",".join(example),
        "max_body_bytes": limit,
        "parts": "larger files go in parts: one request per part with ?part=N&first_row=R; CSV parts repeat the "
        "header; re-sending a part is safe",
        "upload_command": "python -m functions.agent.usage.upload usage.jsonl --url API_URL --token TOKEN",
        "sample_command": "/generate support_chatbot",
        "profiles": list(triage.PROFILES),
        "live": {
            "keys": "an ingest key from the data panel (Live ingestion) or POST /api/ingest/keys",
            "otlp": "POST /v1/traces",
            "litellm": "POST /v1/litellm",
            "docs": "docs/INGESTION.md",
        },
    }


def run_data_helper(ctx: RunContext, intent: str, overview: dict[str, Any], missing: dict[str, str]) -> str:
    start(ctx, "data_helper", "data_helper", "Working out exactly which data is missing and how to send it.")
    doc = ctx.tool("data_helper", "accepted_formats", {}, accepted_formats)
    lines = []
    if overview.get("records", 0) == 0:
        lines.append("I need your LLM usage records to answer this, and your account has none yet.")
    elif missing:
        lines.append(
            f"Your {report.num(overview['records'])} usage records do not carry the fields this analysis needs:"
        )
        lines += [f"- `{f}`: {why}" for f, why in missing.items()]
    else:
        lines.append(
            f"Your account holds {report.num(overview['records'])} usage records from "
            f"{overview['first_day']} to {overview['last_day']}. To add more:"
        )
    lines.append("")
    lines.append(f"Send them to `{doc['endpoint']}` in one of these formats:")
    lines += [f"- **{name}**: {text}" for name, text in doc["formats"].items()]
    lines.append("")
    lines.append(
        "Required fields: " + ", ".join(f"`{f}`" for f in doc["required"]) + ". Optional fields unlock "
        "more analyses: " + ", ".join(f"`{f}`" for f in doc["fields"] if f not in doc["required"]) + "."
    )
    lines.append("")
    lines.append("One JSONL line looks like this:")
    lines.append(f"```json\n{doc['example_jsonl']}\n```")
    lines.append(f"CSV files start with this header:\n```\n{doc['example_csv_header']}\n```")
    lines.append(
        f"A request may carry up to {report.num(doc['max_body_bytes'])} bytes; {doc['parts']}. "
        f"`{doc['upload_command']}` does the splitting for you."
    )
    live = doc["live"]
    lines.append("")
    lines.append(
        "Or skip the files and stream your calls live: create "
        f"{live['keys']}, then point your OpenTelemetry exporter at `{live['otlp']}` (OTLP/HTTP, protobuf or JSON; "
        "spans that follow the GenAI semantic conventions, as the official OpenAI, Anthropic and Google "
        f"instrumentations write them) or LiteLLM's `generic_api` logging callback at `{live['litellm']}`. "
        f"New records reach the analysis within a minute; the copy-paste setup is in `{live['docs']}`."
    )
    lines.append("")
    lines.append(
        f"No data yet? Type `{doc['sample_command']}` (profiles: "
        + ", ".join(f"`{p}`" for p in doc["profiles"])
        + ") to load a realistic synthetic workload "
        "and see a full report."
    )
    return "\n".join(lines)


# -- data agent ------------------------------------------------------------------------------------------------
def generate_sample(ctx: RunContext, entities: dict[str, Any]) -> dict[str, Any]:
    from functions.agent.usage import generate as generator
    from functions.agent.usage import store
    from functions.agent.usage.routes import MAX_ROWS_PER_PART
    from functions.agent.usage.schema import build_row

    profile = entities.get("profile") or "support_chatbot"
    days = max(1, min(int(entities.get("days") or 7), 30))
    seed = int(entities.get("seed") or 42)
    per_day = min(generator.PROFILES[profile].requests_per_day, MAX_ROWS_PER_PART // days)
    args = {"profile": profile, "days": days, "seed": seed, "requests_per_day": per_day}

    def make() -> dict[str, Any]:
        rows = [build_row(r) for r in generator.generate(profile, days, per_day, seed)]
        result = store.insert_rows(ctx.db, ctx.user_id, rows, f"synthetic:{profile}")
        return {**args, "rows_inserted": result["rows_inserted"], "rows_duplicate": result["rows_duplicate"]}

    start(ctx, "data", "generate_sample_data", f"Loading a synthetic {profile} workload into your account.")
    return ctx.tool("data", "generate_sample_data", args, make)


def run_data_agent(
    ctx: RunContext, toolbox: Toolbox, intent: str, entities: dict[str, Any], results: dict[str, Any]
) -> dict[str, Any]:
    start(ctx, "data", "analysis", "Running the analyses over your usage records.")
    calls = list(TOOLS_BY_INTENT.get(intent, FULL_ANALYSIS))
    if intent == "cost_breakdown" and entities.get("by") and ("cost_breakdown", {"by": entities["by"]}) not in calls:
        calls.insert(0, ("cost_breakdown", {"by": entities["by"]}))
    for name, args in calls:
        key = f"{name}:{args['by']}" if name == "cost_breakdown" else name
        if key in results:
            continue
        ctx.check_cancelled()
        results[key] = ctx.tool("data", name, args, lambda n=name, a=args: toolbox.call(n, a))
    return results


# -- optimization ---------------------------------------------------------------------------------------------
def run_optimization(
    ctx: RunContext, results: dict[str, Any], entities: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    start(
        ctx,
        "optimization",
        "optimization",
        "Turning the savings found into recommendations, ranked by monthly savings, effort and risk, and one "
        "plan that applies them together on the traffic each leaves to the next.",
    )
    recs = recommendations.build(results)
    ranked = ctx.tool(
        "optimization", "rank_recommendations", {"from": sorted(results)}, lambda: recommendations.rank(recs)
    )
    ctx.check_cancelled()
    plan = ctx.tool(
        "optimization",
        "savings_plan",
        {"chosen": "all", "order": list(ORDER)},
        lambda: savings_plan(results["plan_segments"], ranked["recommendations"]),
    )
    ctx.check_cancelled()
    growth = float(entities.get("growth_pct_per_month") or 0.0)
    months = int(entities.get("months") or 6)
    args = {"plan": "savings_plan", "growth_pct_per_month": growth, "months": months}
    what_if = ctx.tool("optimization", "what_if", args, lambda: recommendations.projection(plan, growth, months))
    return ranked, plan, what_if


def run_actions(ctx: RunContext, ranked: dict[str, Any]) -> dict[str, Any]:
    start(ctx, "actions", "actions", "Writing a concrete plan with config or code for each recommendation.")
    return ctx.tool(
        "actions",
        "action_plans",
        {"recommendations": ranked["count"]},
        lambda: actions.action_plans(ranked["recommendations"]),
    )


# -- reporting ------------------------------------------------------------------------------------------------
NARRATIVE_PROMPT = (
    "You are Netra Apex, an assistant that lowers the cost of LLM workloads. Write two or three sentences that "
    "explain the findings below to the user and say what to do first. Use only figures that appear in the "
    "facts, exactly as written; do not compute new ones. Each recommendation's savings are stand-alone; the "
    "only total is the plan's (plan_monthly_savings_usd): never add recommendations up. No tables, no headings."
)


def fallback_narrative(ranked: dict[str, Any] | None, plan: dict[str, Any] | None = None) -> str:
    recs = (ranked or {}).get("recommendations") or []
    if not recs:
        return "Your usage is already lean: none of the checks found a change worth making."
    top = recs[0]
    text = (
        f"Start with **{top['title'].lower()}**: on its own it saves {report.money(top['monthly_savings_usd'])} "
        f"per month for {top['effort']} effort and {top['risk']} risk."
    )
    if plan is not None and len(recs) > 1:
        # The plan's total, never the sum of stand-alone figures (they count shared traffic twice).
        count = plan["in_plan"]
        what = f"the {report.num(count)} recommendations in the plan below" if count > 1 else "the plan below"
        text += (
            f" Applied together, each on the traffic the previous ones leave, {what} save "
            f"{report.money(plan['monthly_savings_usd'])} per month."
        )
    return text


def narrative(
    ctx: RunContext,
    facts: dict[str, Any],
    known: set[str],
    ranked: dict[str, Any] | None,
    plan: dict[str, Any] | None = None,
) -> str:
    """The model's explanation, minus any sentence stating a figure no tool produced; templated if it fails."""
    try:
        # The facts go in the system message and the user's own words last, as in any chat turn.
        system = NARRATIVE_PROMPT + "\n\nFacts:\n" + json.dumps(facts, default=str)
        answer = ctx.llm.complete(
            [LLMMessage("system", system), *ctx.history[-4:], LLMMessage("user", ctx.message)],
            purpose="analysis",
            max_tokens=400,
        )
    except Exception as exc:
        log.warning("narrative model call failed; using the template", extra={"reason": type(exc).__name__})
        return fallback_narrative(ranked, plan)
    kept, dropped = figures.guard_narrative(answer.text, known)
    if dropped:
        ctx.emit(
            "agent_thinking",
            "reporting",
            {"thought": "Dropped sentences whose figures no tool produced.", "dropped_figures": dropped[:20]},
        )
    guided = fallback_narrative(ranked, plan) if ranked is not None else ""
    return "\n\n".join(part for part in (kept, guided) if part)


def stream_report(ctx: RunContext, content: str) -> None:
    """The finished report as partial_result events, a section at a time (figures already checked)."""
    sections = content.split("\n\n### ")
    for index, section in enumerate(sections):
        delta = section if index == 0 else "\n\n### " + section
        ctx.emit("partial_result", "reporting", {"stream_id": f"{ctx.run_id}:report", "delta": delta})


def price_table(entities: dict[str, Any]) -> dict[str, Any]:
    names = entities.get("models") or [
        m for m in known_models() if not get_price(m).legacy and get_price(m).provider != "mock"
    ]
    models = []
    for name in names:
        price = get_price(name)
        models.append(
            {
                "model": price.model,
                "provider": price.provider,
                "tier": price.tier,
                "input_per_mtok": float(price.base.input),
                "cached_input_per_mtok": float(price.base.cached_input)
                if price.base.cached_input is not None
                else None,
                "output_per_mtok": float(price.base.output),
                "batch_input_per_mtok": float(price.batch.input) if price.batch else None,
                "context_window": price.context_window,
                "date_read": price.date_read,
                "source_url": price.source_url,
            }
        )
    models.sort(key=lambda m: (m["provider"], m["input_per_mtok"], m["model"]))
    return {"models": models}
