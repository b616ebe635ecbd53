"""The platform's own small pipeline: triage, one deterministic tool, an analyst answer that streams, and a
priced estimate. It emits every non-terminal event type (the platform adds the terminal one). It serves until
the optimization pipeline (functions.agent.intelligence.pipeline) is present, and in the platform's tests.
"""

from __future__ import annotations

from typing import Any

from functions.agent.pipeline_api import FinalAnswer, LLMMessage, PartialResultStream, RunContext

SYSTEM = (
    "You are Netra Apex, an assistant that lowers the cost of a team's LLM workloads. "
    "Answer with concrete, priced recommendations."
)


def _usage_summary(ctx: RunContext) -> dict[str, Any]:
    row = ctx.db.one(
        """SELECT count(*) AS requests, COALESCE(SUM(input_tokens + cached_input_tokens), 0) AS input_tokens,
                  COALESCE(SUM(output_tokens + reasoning_tokens), 0) AS output_tokens,
                  count(DISTINCT model) AS models
             FROM usage_records WHERE user_id = %s""",
        [ctx.user_id],
    )
    return {k: int(v) for k, v in (row or {}).items()}


def _savings(summary: dict[str, Any]) -> dict[str, Any]:
    # A fixed rule of thumb (routing + caching) until the real optimizer lands; every figure is traceable.
    input_tokens, output_tokens = summary.get("input_tokens", 0), summary.get("output_tokens", 0)
    return {
        "assumption": "30% of input tokens cacheable, 20% of requests routable to a 10x cheaper model",
        "cacheable_input_tokens": int(input_tokens * 0.3),
        "routable_output_tokens": int(output_tokens * 0.2),
    }


def run(ctx: RunContext) -> FinalAnswer:
    ctx.emit("agent_started", "triage", {"step": "triage"})
    ctx.emit("agent_thinking", "triage", {"thought": "Reading the request and deciding which analysis it needs."})
    triage = ctx.llm.complete(
        [LLMMessage("system", "Classify the request in one word."), LLMMessage("user", ctx.message)],
        purpose="triage",
        max_tokens=8,
    )
    ctx.check_cancelled()

    summary = ctx.tool("triage", "usage_summary", {"user": "self"}, lambda: _usage_summary(ctx))
    ctx.check_cancelled()

    ctx.emit("agent_started", "analyst", {"step": "analysis", "intent": triage.text.strip()[:80]})
    ctx.emit("agent_thinking", "analyst", {"thought": "Drafting recommendations from the usage summary."})
    stream = PartialResultStream(ctx, "analyst", stream_id=f"{ctx.run_id}:analyst")
    messages = [LLMMessage("system", SYSTEM), *ctx.history, LLMMessage("user", ctx.message)]
    answer = ctx.llm.complete(messages, purpose="analysis", on_token=stream.on_token, on_restart=stream.on_restart)
    stream.flush()
    ctx.check_cancelled()

    savings = ctx.tool("analyst", "estimate_savings", {"from": "usage_summary"}, lambda: _savings(summary))
    content = (
        f"{answer.text.strip()}\n\n"
        f"Usage on file: {summary['requests']} requests across {summary['models']} model(s). "
        f"Estimated cacheable input tokens: {savings['cacheable_input_tokens']}; "
        f"output tokens routable to a cheaper model: {savings['routable_output_tokens']}."
    )
    return FinalAnswer(content=content, metadata={"pipeline": "minimal", "model": f"{answer.provider}:{answer.model}"})
