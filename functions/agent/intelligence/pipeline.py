"""The optimization pipeline: the supervisor that routes a chat turn by intent and data sufficiency.

    triage -> (generate sample data) -> overview and sufficiency
           -> off topic / ambiguous / upload help / price list: a direct answer
           -> no or insufficient data: data helper (exactly what is missing, accepted formats)
           -> data -> optimization -> actions -> reporting

Every figure in the answer comes from a tool result of this run (ctx.tool); the model only classifies the
request and writes a short narrative, whose sentences with unsupported figures are dropped.
"""

from __future__ import annotations

from typing import Any

from functions.agent.intelligence import agents, figures, report
from functions.agent.intelligence.toolbox import FULL_ANALYSIS, Toolbox
from functions.agent.intelligence.triage import DATA_INTENTS, keyword_triage, sufficiency
from functions.agent.pipeline_api import FinalAnswer, RunContext

OFF_TOPIC = (
    "I can only help with the cost and efficiency of LLM workloads: where the money goes, prompt caching, "
    "batch processing, cheaper models, latency, and what-if projections. Ask me about one of those, or "
    "type `/generate support_chatbot` to see a report on sample data."
)


def _clarify(overview: dict[str, Any]) -> str:
    if overview.get("records"):
        data = (
            f"Your account holds {report.num(overview['records'])} usage records from {overview['first_day']} "
            f"to {overview['last_day']} ({report.money(overview['monthly_cost_usd'])} per month)."
        )
    else:
        data = "Your account has no usage records yet; type `/generate support_chatbot` to try sample data."
    return (
        f"{data} What would you like to know? For example:\n\n"
        "- *Where does our LLM money go?* (cost by model, feature, end user, day)\n"
        "- *How can we cut our LLM costs?* (a full report with ranked, priced recommendations)\n"
        "- *Can we cache our prompts?* / *Which traffic could use the batch API?*\n"
        "- *Which calls could use a cheaper model?* / *What is our p95 latency per model?*\n"
        "- *What if our usage grows by 20% a month?*"
    )


def run(ctx: RunContext) -> FinalAnswer:
    # The worker has announced the supervisor (agent_started, with attempt and resume data); it now routes.
    ctx.emit("agent_thinking", "supervisor", {"thought": "Routing: triage first, then the agents the question needs."})
    result = agents.run_triage(ctx)
    intent, entities = result.intent, dict(result.entities)
    meta: dict[str, Any] = {"pipeline": "intelligence", "intent": intent, "triage": result.as_dict()}
    toolbox = Toolbox(ctx.db, ctx.user_id)

    if intent == "generate_data" and result.source == "llm" and keyword_triage(ctx.message).intent != intent:
        # Writing sample rows into a real account needs the user's explicit ask, not only the model's reading.
        intent = "data_upload"
    if intent == "generate_data":
        generated = agents.generate_sample(ctx, entities)
        meta["generated"] = generated
        toolbox = Toolbox(ctx.db, ctx.user_id)  # the data version changed
        intent = "full_analysis"

    if intent == "off_topic":
        return _finish(ctx, OFF_TOPIC, meta, route="off_topic")
    if intent == "pricing":
        agents.start(ctx, "data", "pricing", "Looking up list prices in the catalog.")
        prices = ctx.tool(
            "data",
            "price_lookup",
            {"models": entities.get("models") or "all current"},
            lambda: agents.price_table(entities),
        )
        return _finish(ctx, report.prices_section(prices), meta, route="pricing")

    if intent in DATA_INTENTS:
        # The prompt-cache windows (the heaviest query) start now on a second connection, beside the others.
        toolbox.prefetch(list(agents.TOOLS_BY_INTENT.get(intent, FULL_ANALYSIS)))
    overview = ctx.tool("triage", "usage_overview", {}, lambda: toolbox.call("usage_overview"))
    check = sufficiency(intent, overview) if intent in DATA_INTENTS else {"level": "n/a", "missing": {}}
    ctx.emit(
        "agent_thinking",
        "supervisor",
        {"thought": f"Data sufficiency for {intent}: {check['level']}.", "sufficiency": check},
    )
    meta["sufficiency"] = check
    if intent == "ambiguous":
        return _finish(ctx, _clarify(overview), meta, route="clarify")
    if intent == "data_upload" or check["level"] in ("none", "insufficient"):
        content = agents.run_data_helper(ctx, intent, overview, check["missing"] if check["level"] != "none" else {})
        return _finish(ctx, content, meta, route="data_helper")

    results: dict[str, Any] = {"usage_overview": overview}
    agents.run_data_agent(ctx, toolbox, intent, entities, results)
    ranked = savings = what_if = plans = None
    if intent in agents.OPTIMIZING_INTENTS:
        ranked, savings, what_if = agents.run_optimization(ctx, results, entities)
        plans = agents.run_actions(ctx, ranked)

    agents.start(ctx, "reporting", "reporting", "Writing the report: tables from the tools, a short explanation.")
    tool_results = [r["result"] for r in getattr(ctx, "tool_results", [])] or [
        v for v in (*results.values(), ranked, savings, what_if, plans) if v is not None
    ]
    known = figures.known_figures(tool_results)
    facts = {
        "overview": {k: overview[k] for k in ("records", "period_days", "total_cost_usd", "monthly_cost_usd")},
        "recommendations": [
            {k: r[k] for k in ("title", "monthly_savings_usd", "effort", "risk")}
            for r in (ranked or {}).get("recommendations", [])[:6]
        ],
    }
    if savings is not None:
        facts["plan_monthly_savings_usd"] = savings["monthly_savings_usd"]
    story = agents.narrative(ctx, facts, known, ranked, savings)
    missing = check["missing"] if check["level"] == "partial" else {}
    content = report.full_report(
        results,
        ranked,
        savings,
        what_if,
        plans,
        story,
        missing,
        title="LLM cost report" if ranked is not None else "Your LLM usage",
    )
    meta["report"] = {
        "recommendations": (ranked or {}).get("recommendations", []),
        "savings_plan": savings,
        "what_if": what_if,
        "tools": sorted(results),
    }
    return _finish(ctx, content, meta, route="report")


def _finish(ctx: RunContext, content: str, meta: dict[str, Any], route: str) -> FinalAnswer:
    agents.stream_report(ctx, content)
    return FinalAnswer(content=content, metadata={**meta, "route": route})
