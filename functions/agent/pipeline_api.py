"""The contract between the agent platform (worker, events, LLM access) and the agent pipelines that run
inside it (the optimization intelligence). The worker builds a RunContext per run and calls a Pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.errors import NetraError
from shared.models.events import EventType


class RunCancelled(NetraError):
    """Raised by RunContext.check_cancelled() when the user cancelled; the worker emits run_cancelled."""


@dataclass
class TokenUsage:
    """Tokens of one LLM call, by price bucket."""

    input_tokens: int = 0  # uncached input
    cached_input_tokens: int = 0  # cache reads
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return (
            self.input_tokens,
            self.cached_input_tokens,
            self.cache_write_tokens,
            self.output_tokens,
            self.reasoning_tokens,
        )


@dataclass
class LLMMessage:
    role: str  # system | user | assistant
    content: str


@dataclass
class LLMResult:
    text: str
    provider: str
    model: str
    usage: TokenUsage
    cost_usd: float = 0.0


class LLM(Protocol):
    def complete(
        self,
        messages: list[LLMMessage],
        *,
        purpose: str = "",
        on_token: Callable[[str], None] | None = None,
        max_tokens: int | None = None,
        on_restart: Callable[[], None] | None = None,
    ) -> LLMResult:
        """One call through the provider chain (fallbacks, breaker); records a cost-ledger row.

        ``on_token`` receives the text as it streams; ``on_restart`` is called when a stream failed part-way
        and the call starts over on a retry or the next model (drop what ``on_token`` received so far).
        Raises ``functions.agent.llm.chain.LLMUnavailable`` when every model failed (the run then fails
        with ``agent_error`` unless the pipeline handles it)."""
        ...


@dataclass
class FinalAnswer:
    content: str  # markdown shown to the user and stored as the assistant message
    metadata: dict[str, Any] = field(default_factory=dict)  # e.g. {"report": {...}, "tool_results": [...]}


class RunContext(Protocol):
    run_id: str
    thread_id: str
    user_id: str
    message: str  # the user's message that started the run
    history: list[LLMMessage]  # earlier messages of the thread, oldest first
    db: Any  # shared.db.Database
    llm: LLM

    def emit(self, type: EventType, agent_name: str | None, data: dict[str, Any]) -> None:
        """Append an event to the run's log and publish it (seq assigned by the platform)."""
        ...

    def tool(
        self, agent_name: str, tool_name: str, args: dict[str, Any], fn: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """Run a deterministic tool: emits tool_executing, calls fn, emits tool_completed with the result,
        and keeps the result for the run (so every number in the final report can be traced to a tool)."""
        ...

    def check_cancelled(self) -> None:
        """Raise RunCancelled if the user asked to cancel. Call between steps."""
        ...


Pipeline = Callable[[RunContext], FinalAnswer]


class PartialResultStream:
    """Streams an LLM answer to the client as ``partial_result`` events without one event per token.

    Pass ``on_token`` and ``on_restart`` to ``ctx.llm.complete``; call :meth:`flush` after it returns. Text is
    sent at most every ``min_interval_s`` (and always on flush). ``on_restart`` is called by the platform when a
    stream failed part-way and the call starts over (retry or fallback model): the next event carries
    ``reset: true`` so clients drop the text received so far for this stream.
    """

    def __init__(self, ctx: RunContext, agent_name: str, stream_id: str, min_interval_s: float = 0.05) -> None:
        import time

        self._clock = time.monotonic
        self.ctx = ctx
        self.agent_name = agent_name
        self.stream_id = stream_id
        self.min_interval_s = min_interval_s
        self._buffer: list[str] = []
        self._last = 0.0
        self._reset = False
        self.text = ""

    def on_token(self, text: str) -> None:
        self._buffer.append(text)
        self.text += text
        if self._clock() - self._last >= self.min_interval_s:
            self.flush()

    def on_restart(self) -> None:
        self._buffer.clear()
        self.text = ""
        self._reset = True

    def flush(self) -> None:
        if not self._buffer and not self._reset:
            return
        data: dict[str, Any] = {"stream_id": self.stream_id, "delta": "".join(self._buffer)}
        if self._reset:
            data["reset"] = True
        self._buffer.clear()
        self._reset = False
        self._last = self._clock()
        self.ctx.emit("partial_result", self.agent_name, data)
