"""A RunContext for running the optimization pipeline in tests: real PostgreSQL, real tools, the real mock
provider behind the real fallback chain (or a scripted model), events and tool results kept in memory.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from functions.agent.llm.chain import FallbackChain
from functions.agent.llm.mock import MockProvider
from functions.agent.pipeline_api import LLMMessage, LLMResult, RunCancelled, TokenUsage


class ChainLLM:
    """ctx.llm over the production FallbackChain with the mock provider (deterministic text and usage)."""

    def __init__(self, models: list[tuple[str, str]] | None = None) -> None:
        self.chain = FallbackChain(
            {"mock": MockProvider()},
            models or [("mock", "mock-pro"), ("mock", "mock-flash")],
            timeout_s=5,
            max_attempts=1,
            retry_initial_s=0.01,
            breaker_threshold=3,
            breaker_recovery_s=30,
        )
        self.calls: list[dict[str, Any]] = []

    def complete(
        self,
        messages: list[LLMMessage],
        *,
        purpose: str = "",
        on_token: Callable[[str], None] | None = None,
        max_tokens: int | None = None,
        on_restart: Callable[[], None] | None = None,
    ) -> LLMResult:
        outcome = self.chain.complete(messages, on_token=on_token, on_restart=on_restart, max_tokens=max_tokens)
        self.calls.append({"purpose": purpose, "model": outcome.model, "text": outcome.text})
        return LLMResult(outcome.text, outcome.provider, outcome.model, outcome.usage)


class ScriptedLLM:
    """Answers from a list (a str is the text, an Exception is raised), for triage tests."""

    def __init__(self, answers: list[str | Exception]) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    def complete(
        self,
        messages: list[LLMMessage],
        *,
        purpose: str = "",
        on_token: Callable[[str], None] | None = None,
        max_tokens: int | None = None,
        on_restart: Callable[[], None] | None = None,
    ) -> LLMResult:
        self.calls.append({"purpose": purpose})
        answer = self.answers.pop(0) if self.answers else "ok"
        if isinstance(answer, Exception):
            raise answer
        return LLMResult(answer, "scripted", "mock-pro", TokenUsage(input_tokens=10, output_tokens=5))


@dataclass
class Event:
    type: str
    agent_name: str | None
    data: dict[str, Any]


@dataclass
class TestRunContext:
    db: Any
    user_id: str
    message: str
    llm: Any = field(default_factory=ChainLLM)
    history: list[LLMMessage] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    thread_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    cancel_after_checks: int | None = None
    events: list[Event] = field(default_factory=list)
    tool_results: list[dict[str, Any]] = field(default_factory=list)
    checks: int = 0

    __test__ = False  # not a pytest test class

    def emit(self, type: str, agent_name: str | None, data: dict[str, Any]) -> None:
        if type in ("agent_completed", "agent_error", "run_cancelled"):
            raise ValueError("terminal events belong to the platform")
        self.events.append(Event(type, agent_name, data))

    def tool(
        self, agent_name: str, tool_name: str, args: dict[str, Any], fn: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        self.check_cancelled()
        call_id = uuid.uuid4().hex[:12]
        self.emit("tool_executing", agent_name, {"tool": tool_name, "call_id": call_id, "args": args})
        result = fn()
        self.tool_results.append(
            {"tool": tool_name, "call_id": call_id, "agent": agent_name, "args": args, "result": result}
        )
        self.emit("tool_completed", agent_name, {"tool": tool_name, "call_id": call_id, "ok": True, "result": result})
        return result

    def check_cancelled(self) -> None:
        self.checks += 1
        if self.cancel_after_checks is not None and self.checks > self.cancel_after_checks:
            raise RunCancelled("cancelled by the test")

    def results(self, tool: str) -> list[dict[str, Any]]:
        return [r["result"] for r in self.tool_results if r["tool"] == tool]

    def agents_started(self) -> list[str]:
        return [e.agent_name or "" for e in self.events if e.type == "agent_started"]
