"""The RunContext the worker hands to a pipeline: event emission with gapless sequence numbers, tools,
cancel and time-budget checks, and LLM access that writes a cost-ledger row per call.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from functions.agent.eventlog import EventLog, RunRef, SeqConflict
from functions.agent.llm.chain import FallbackChain
from functions.agent.pipeline_api import LLMMessage, LLMResult, RunCancelled
from functions.agent.store import ledger
from functions.agent.store import runs as run_store
from shared.db.database import Database
from shared.models.events import TERMINAL_EVENT_TYPES, AgentEvent, EventType

log = logging.getLogger("agent.run")


class RunAborted(BaseException):  # noqa: N818 - BaseException so that a pipeline's `except Exception` cannot swallow it
    """The run must stop now; the worker decides what the client is told."""

    code = "aborted"


class RunTimedOut(RunAborted):
    code = "time_budget_exceeded"


class LostOwnership(RunAborted):
    """Another attempt owns the run now (this worker was presumed dead), or the run was deleted."""

    code = "lost_ownership"


class RunLLM:
    """The pipeline's ``ctx.llm``: the instance's fallback chain, plus the ledger and the budget."""

    def __init__(self, ctx: WorkerRunContext, chain: FallbackChain) -> None:
        self.ctx = ctx
        self.chain = chain

    def complete(
        self,
        messages: list[LLMMessage],
        *,
        purpose: str = "",
        on_token: Callable[[str], None] | None = None,
        max_tokens: int | None = None,
        on_restart: Callable[[], None] | None = None,
    ) -> LLMResult:
        self.ctx.check_alive()
        outcome = self.chain.complete(messages, on_token=on_token, on_restart=on_restart, max_tokens=max_tokens)
        cost = ledger.price(outcome.model, outcome.usage)
        # Written now, not at the end: the money is spent even if the run later fails or restarts.
        ledger.record_call(
            self.ctx.db,
            user_id=self.ctx.user_id,
            run_id=self.ctx.run_id,
            thread_id=self.ctx.thread_id,
            provider=outcome.provider,
            model=outcome.model,
            usage=outcome.usage,
            cost=cost,
            purpose=purpose,
            latency_ms=outcome.latency_ms,
            attempts=outcome.attempts,
        )
        if outcome.fallbacks:
            self.ctx.emit(
                "agent_thinking",
                "llm",
                {"llm_fallback": {"used": f"{outcome.provider}:{outcome.model}", "skipped": outcome.fallbacks}},
            )
        return LLMResult(
            text=outcome.text, provider=outcome.provider, model=outcome.model, usage=outcome.usage, cost_usd=float(cost)
        )


class WorkerRunContext:
    def __init__(
        self,
        *,
        run: RunRef,
        message: str,
        history: list[LLMMessage],
        db: Database,
        eventlog: EventLog,
        chain: FallbackChain,
        attempt: int,
        last_seq: int,
        deadline: float,
        heartbeat_interval_s: float = 1.0,
    ) -> None:
        self.run = run
        self.message = message
        self.history = history
        self.db = db
        self.eventlog = eventlog
        self.attempt = attempt
        self.last_seq = last_seq
        self.deadline = deadline  # time.monotonic() value
        self.llm = RunLLM(self, chain)
        self.tool_results: list[dict[str, Any]] = []
        self._emit_lock = threading.RLock()
        self._closed = False
        self._lost = False
        self._heartbeat_interval_s = heartbeat_interval_s
        self._last_heartbeat = 0.0

    # -- identity (the RunContext protocol) --------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def thread_id(self) -> str:
        return self.run.thread_id

    @property
    def user_id(self) -> str:
        return self.run.user_id

    # -- liveness ------------------------------------------------------------------------------------------
    def close(self) -> None:
        """No more pipeline side effects: a pipeline thread still running after a timeout becomes inert."""
        with self._emit_lock:
            self._closed = True

    def lose(self) -> None:
        """Ownership is gone (the run lock's connection failed): stop at the next check, finish nothing."""
        self._lost = True

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()

    def check_alive(self) -> None:
        if self._lost:
            raise LostOwnership("the run lock was lost with its database connection")
        if self._closed:
            raise LostOwnership("the run is no longer executed by this pipeline call")
        if self.remaining_s() <= 0:
            raise RunTimedOut("the run exceeded its time budget")

    def check_cancelled(self) -> None:
        self.check_alive()
        row = run_store.heartbeat(self.db, self.run_id, self.attempt, self.last_seq)
        self._last_heartbeat = time.monotonic()
        if row is None:
            if run_store.get_run(self.db, self.run_id) is None:
                raise RunCancelled("the run was deleted with its thread")
            raise LostOwnership("another attempt owns the run")
        if row["cancel_requested"]:
            raise RunCancelled("cancelled by the user")

    # -- events --------------------------------------------------------------------------------------------
    def emit(self, type: EventType, agent_name: str | None, data: dict[str, Any]) -> None:
        if type in TERMINAL_EVENT_TYPES:
            raise ValueError(f"{type} is emitted by the platform when the pipeline returns or fails")
        self._emit(type, agent_name, data, final=False)

    def emit_final(self, type: EventType, agent_name: str | None, data: dict[str, Any]) -> AgentEvent:
        """The terminal event, after the run's outcome is committed (the context is closed by then)."""
        return self._emit(type, agent_name, data, final=True)

    def _emit(self, type: EventType, agent_name: str | None, data: dict[str, Any], final: bool) -> AgentEvent:
        with self._emit_lock:
            if not final:
                self.check_alive()
            event = AgentEvent(
                type=type,
                run_id=self.run_id,
                thread_id=self.thread_id,
                seq=self.last_seq + 1,
                agent_name=agent_name,
                data=data,
            )
            try:
                self.eventlog.append(self.run, event)
            except SeqConflict as exc:
                self._closed = True
                raise LostOwnership(str(exc)) from None
            self.last_seq = event.seq
            self.eventlog.publish(self.run, event)
        if not final and time.monotonic() - self._last_heartbeat >= self._heartbeat_interval_s:
            # Keeps claimed_at fresh so a live worker is never presumed dead; also mirrors last_seq in SQL.
            self._last_heartbeat = time.monotonic()
            if run_store.heartbeat(self.db, self.run_id, self.attempt, self.last_seq) is None:
                self.close()
                raise LostOwnership("the run was taken over or deleted")
        return event

    # -- tools ---------------------------------------------------------------------------------------------
    def tool(
        self, agent_name: str, tool_name: str, args: dict[str, Any], fn: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        self.check_cancelled()
        call_id = uuid.uuid4().hex[:12]
        self.emit("tool_executing", agent_name, {"tool": tool_name, "call_id": call_id, "args": args})
        started = time.perf_counter()
        try:
            result = fn()
        except Exception as exc:
            self.emit(
                "tool_completed",
                agent_name,
                {
                    "tool": tool_name,
                    "call_id": call_id,
                    "ok": False,
                    "error": f"{type(exc).__name__}: {str(exc)[:300]}",
                },
            )
            raise
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        self.tool_results.append(
            {"tool": tool_name, "call_id": call_id, "agent": agent_name, "args": args, "result": result}
        )
        self.emit(
            "tool_completed",
            agent_name,
            {"tool": tool_name, "call_id": call_id, "ok": True, "duration_ms": duration_ms, "result": result},
        )
        return result
