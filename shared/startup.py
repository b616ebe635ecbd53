"""The startup manager every service starts through.

Components have a priority and dependencies (a graph, checked at registration). Each component starts
on its own thread as soon as its dependencies are up, so independent ones start in parallel. Failed
attempts are retried with exponential backoff and full jitter, each attempt is bounded by a timeout, and
a circuit breaker per component stops hammering a dependency that keeps failing. Only CRITICAL
components gate readiness; others failing leave the service ready but degraded.

Requests call :meth:`StartupManager.require` to wait (bounded) for what they need; a dependency that is
not up in time becomes a 503 with ``Retry-After`` instead of a 500 or a crash loop.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from shared.errors import NetraError, ServiceUnavailable
from shared.timeout import call_with_timeout

log = logging.getLogger("startup")


class Priority(IntEnum):
    CRITICAL = 0
    HIGH = 1
    MEDIUM = 2
    LOW = 3


class Status(StrEnum):
    PENDING = "pending"
    STARTING = "starting"
    RETRYING = "retrying"
    UP = "up"
    FAILED = "failed"  # gave up: a fatal error or max attempts reached


class HealthKind(StrEnum):
    """The three health checks every service answers at ``/health/<kind>``."""

    LIVE = "live"
    READY = "ready"
    STARTUP = "startup"


HealthAnswer = tuple[int, dict[str, Any], dict[str, str]]  # status, JSON body, headers


class StartupGraphError(NetraError, ValueError):
    """Unknown dependency or a cycle, found at registration."""


class FatalStartupError(NetraError):
    """Raise from a start function when retrying cannot help (wrong credentials, missing permission)."""

    reason_code = "misconfigured"


def failure_reason(exc: BaseException) -> tuple[str, dict[str, Any]]:
    """A stable public code (and safe details) for why a start attempt failed: health answers and 503 bodies
    carry these; the exception's text, which may hold hosts, SQLSTATE messages or provider answers, goes to
    the log only. An exception names its own code with ``reason_code`` (and ``public_details``)."""
    code = getattr(exc, "reason_code", None)
    if isinstance(code, str):
        details = getattr(exc, "public_details", None)
        return code, dict(details) if isinstance(details, dict) else {}
    name = type(exc).__name__
    if isinstance(exc, TimeoutError) or "Timeout" in name:  # httpx's and Google's timeouts are not TimeoutError
        return "timeout", {}
    if isinstance(exc, OSError) or "Connect" in name:
        return "unreachable", {}
    return "start_failed", {}


@dataclass
class RetryPolicy:
    initial_s: float = 1.0
    max_s: float = 30.0
    multiplier: float = 2.0
    max_attempts: int | None = None  # None: keep trying (with backoff) for the life of the instance

    def delay(self, attempt: int) -> float:
        """Full jitter (AWS architecture blog): spreads many instances retrying one database."""
        ceiling = min(self.max_s, self.initial_s * self.multiplier ** max(0, attempt - 1))
        return random.uniform(min(self.initial_s, ceiling) / 2, ceiling)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive failures; after ``recovery_s`` lets one trial through."""

    def __init__(
        self,
        name: str,
        failure_threshold: int = 3,
        recovery_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.recovery_s = recovery_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state()

    def _state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.recovery_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        with self._lock:
            state = self._state()
            if state is BreakerState.CLOSED:
                return True
            if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
                self._trial_in_flight = True
                return True
            return False

    def retry_after(self) -> float:
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.recovery_s - (self._clock() - self._opened_at))

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_in_flight or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
            self._trial_in_flight = False

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"state": self._state().value, "consecutive_failures": self._failures}


@dataclass
class Component:
    name: str
    start: Callable[[], Any]
    priority: Priority = Priority.CRITICAL
    depends_on: tuple[str, ...] = ()
    timeout_s: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker_threshold: int = 3
    # After the breaker opens, one trial every 5 s: a dependency that comes back is used again within seconds
    # (what every service had set by hand); the RetryPolicy already spaces the attempts before that.
    breaker_recovery_s: float = 5.0
    # Not needed by the first request: starts once a response has gone out (release_deferred), a request
    # requires it, or on its own once the rest is done (StartupManager.DEFER_S, DEFER_MAX_S), whichever comes
    # first. Its imports and connections then do not compete with the first request for the interpreter.
    deferred: bool = False


@dataclass
class _State:
    component: Component
    breaker: CircuitBreaker
    status: Status = Status.PENDING
    attempts: int = 0
    last_error: str | None = None  # the detail, for logs and in-process inspection only
    error_code: str | None = None  # what health answers and 503 bodies say
    error_details: dict[str, Any] = field(default_factory=dict)
    started_at: float | None = None
    up_at: float | None = None
    duration_ms: float | None = None
    resource: Any = None
    up_event: threading.Event = field(default_factory=threading.Event)
    done_event: threading.Event = field(default_factory=threading.Event)  # up or failed for good


class StartupManager:
    # With no request, a deferred component starts DEFER_S after every component that is not deferred is done
    # (up or failed), and DEFER_MAX_S after the start at the latest. Counting from the start alone let a loaded
    # instance start them while its first request still waited for the database and the keys (cold start).
    DEFER_S = 0.5
    DEFER_MAX_S = 5.0

    def __init__(self, service: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.service = service
        self._clock = clock
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()
        self._created = clock()
        self._started = False
        self._stop = threading.Event()
        self._released = threading.Event()
        self._start_clock = self._created
        self._complete_logged = False
        # A service's additions to its health answers (ws_bridge: connections, shutting down), applied last.
        self.health_overlay: Callable[[HealthKind, HealthAnswer], HealthAnswer] | None = None

    # -- registration -------------------------------------------------------------------------------
    def register(self, component: Component) -> None:
        if self._started:
            raise StartupGraphError(f"cannot register {component.name!r} after start()")
        if component.name in self._states:
            raise StartupGraphError(f"component {component.name!r} registered twice")
        missing = [d for d in component.depends_on if d not in self._states]
        if missing:
            raise StartupGraphError(
                f"component {component.name!r} depends on unknown component(s): {', '.join(missing)}"
            )
        self._states[component.name] = _State(
            component, CircuitBreaker(component.name, component.breaker_threshold, component.breaker_recovery_s)
        )

    @staticmethod
    def check_graph(components: list[Component]) -> None:
        """Reject unknown names and cycles for a batch given in any order."""
        names = {c.name for c in components}
        graph = {c.name: c.depends_on for c in components}
        for c in components:
            unknown = [d for d in c.depends_on if d not in names]
            if unknown:
                raise StartupGraphError(f"component {c.name!r} depends on unknown component(s): {', '.join(unknown)}")
        visiting: list[str] = []
        done: set[str] = set()

        def visit(node: str) -> None:
            if node in done:
                return
            if node in visiting:
                cycle = visiting[visiting.index(node) :] + [node]
                raise StartupGraphError(f"dependency cycle: {' -> '.join(cycle)}")
            visiting.append(node)
            for dep in graph[node]:
                visit(dep)
            visiting.pop()
            done.add(node)

        for name in graph:
            visit(name)

    def register_all(self, components: list[Component]) -> None:
        self.check_graph(components)
        ordered: list[Component] = []
        placed: set[str] = set()
        while len(ordered) < len(components):
            for c in components:
                if c.name not in placed and all(d in placed for d in c.depends_on):
                    ordered.append(c)
                    placed.add(c.name)
        for c in ordered:
            self.register(c)

    # -- running ------------------------------------------------------------------------------------
    def start(self) -> StartupManager:
        """Start every component in the background; returns at once. Idempotent."""
        with self._lock:
            if self._started:
                return self
            self._started = True
            self._start_clock = self._clock()
        for state in self._states.values():
            threading.Thread(
                target=self._run, args=(state,), name=f"startup-{state.component.name}", daemon=True
            ).start()
        return self

    def start_when_serving(self) -> StartupManager:
        """Start in the process that will serve requests.

        functions-framework imports the function in gunicorn's master process and then forks the worker;
        threads started in the master do not exist in the worker. So start right after the fork, and
        fall back to the first request (``require``) for servers that do not fork.
        """
        os.register_at_fork(after_in_child=self.start)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._released.set()

    def _waits_on_deferred(self, name: str) -> bool:
        component = self._states[name].component
        return component.deferred or any(self._waits_on_deferred(d) for d in component.depends_on)

    def _wait_for_release(self) -> None:
        latest = self._start_clock + self.DEFER_MAX_S
        first_needs = [s for n, s in self._states.items() if not self._waits_on_deferred(n)]
        while not self._released.is_set() and not self._stop.is_set():
            if all(s.done_event.is_set() for s in first_needs):
                latest = min(latest, self._clock() + self.DEFER_S)
                first_needs = []
            remaining = latest - self._clock()
            if remaining <= 0:
                return
            # Polled: the components the first request needs finish in threads of their own.
            self._released.wait(min(0.05, remaining) if first_needs else remaining)

    def release_deferred(self) -> None:
        """Let deferred components start now (called after each response; setting a set Event is cheap)."""
        self._released.set()

    def _run(self, state: _State) -> None:
        comp = state.component
        for dep in comp.depends_on:
            dep_state = self._states[dep]
            while not dep_state.up_event.wait(0.2):
                if self._stop.is_set():
                    return
                if dep_state.status is Status.FAILED:
                    state.status = Status.FAILED
                    state.last_error = f"dependency {dep!r} failed: {dep_state.last_error}"
                    state.error_code, state.error_details = "dependency_failed", {"dependency": dep}
                    state.done_event.set()
                    return
        if comp.deferred:
            self._wait_for_release()
        state.started_at = self._clock()
        while not self._stop.is_set():
            if not state.breaker.allow():
                self._stop.wait(min(1.0, max(0.05, state.breaker.retry_after())))
                continue
            state.attempts += 1
            state.status = Status.STARTING if state.attempts == 1 else Status.RETRYING
            try:
                resource = self._attempt(comp)
            except FatalStartupError as exc:
                state.breaker.record_failure()
                state.last_error = str(exc)
                state.error_code, state.error_details = failure_reason(exc)
                state.status = Status.FAILED
                state.done_event.set()
                log.error(
                    "component failed and will not be retried", extra={"component": comp.name, "reason": str(exc)}
                )
                return
            except Exception as exc:  # any start failure is retried with backoff
                state.breaker.record_failure()
                state.last_error = f"{type(exc).__name__}: {exc}"
                state.error_code, state.error_details = failure_reason(exc)
                limit = comp.retry.max_attempts
                if limit is not None and state.attempts >= limit:
                    state.status = Status.FAILED
                    state.done_event.set()
                    log.error(
                        "component gave up",
                        extra={"component": comp.name, "attempts": state.attempts, "reason": state.last_error},
                    )
                    return
                delay = comp.retry.delay(state.attempts)
                log.warning(
                    "component start failed, retrying",
                    extra={
                        "component": comp.name,
                        "attempt": state.attempts,
                        "retry_in_s": round(delay, 2),
                        "reason": state.last_error,
                    },
                )
                self._stop.wait(delay)
                continue
            state.breaker.record_success()
            state.resource = resource
            state.up_at = self._clock()
            state.duration_ms = round((state.up_at - self._created) * 1000, 1)
            state.status = Status.UP
            state.last_error = None
            state.error_code, state.error_details = None, {}
            state.up_event.set()
            state.done_event.set()
            log.info(
                "component up",
                extra={"component": comp.name, "duration_ms": state.duration_ms, "attempts": state.attempts},
            )
            self._log_complete()
            return

    def _attempt(self, comp: Component) -> Any:
        return call_with_timeout(comp.start, comp.timeout_s, f"start of {comp.name!r}", f"attempt-{comp.name}")

    def _log_complete(self) -> None:
        if self._complete_logged or not self.is_ready():
            return
        self._complete_logged = True
        log.info(
            "startup complete",
            extra={"startup_ms": round((self._clock() - self._created) * 1000, 1), "degraded": self.is_degraded()},
        )

    # -- queries -------------------------------------------------------------------------------------
    def resource(self, name: str) -> Any:
        return self._states[name].resource

    def is_up(self, name: str) -> bool:
        return self._states[name].status is Status.UP

    def _critical(self) -> list[_State]:
        return [s for s in self._states.values() if s.component.priority is Priority.CRITICAL]

    def is_ready(self) -> bool:
        return all(s.status is Status.UP for s in self._critical())

    def is_degraded(self) -> bool:
        return self.is_ready() and any(s.status is not Status.UP for s in self._states.values())

    def require(self, name: str, timeout_s: float = 10.0) -> Any:
        """Wait for ``name`` up to ``timeout_s``; raise a 503 with Retry-After if it is not."""
        state = self._states[name]
        if not self._started:
            self.start()
        if not state.up_event.is_set() and self._waits_on_deferred(name):
            self.release_deferred()  # a request is waiting for it: nothing deferred waits any longer
        if state.up_event.wait(timeout_s):
            return state.resource
        retry_after = max(1, round(state.breaker.retry_after() or 2))
        # The public answer names the component and a stable reason; last_error (hosts, SQLSTATE texts,
        # provider answers) was logged when the attempt failed.
        reason = state.error_code or "starting"
        raise ServiceUnavailable(
            f"{name} is not available yet ({reason})",
            retry_after=retry_after,
            code=f"{name}_unavailable",
            details={"component": name, "reason": reason, **state.error_details},
        )

    def wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        for state in self._critical():
            if not state.up_event.wait(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def snapshot(self) -> dict[str, Any]:
        now = self._clock()
        components = {}
        for name, s in self._states.items():
            components[name] = {
                "status": s.status.value,
                "priority": s.component.priority.name.lower(),
                "deferred": s.component.deferred,
                "depends_on": list(s.component.depends_on),
                "attempts": s.attempts,
                "duration_ms": s.duration_ms,
                "last_error": s.last_error,
                "error": {"code": s.error_code, **s.error_details} if s.error_code else None,
                "breaker": s.breaker.snapshot(),
            }
        if self.is_ready():
            overall = "degraded" if self.is_degraded() else "ready"
        elif any(s.status is Status.FAILED for s in self._critical()):
            overall = "failed"
        else:
            overall = "starting"
        return {
            "service": self.service,
            "status": overall,
            "ready": self.is_ready(),
            "degraded": self.is_degraded(),
            "uptime_ms": round((now - self._created) * 1000, 1),
            "components": components,
        }

    # -- health bodies (framework-neutral: status code, JSON body, headers) --------------------------
    def health(self, kind: HealthKind | str) -> HealthAnswer:
        """The one place a health answer is made (the routers only serialize it); ValueError for an unknown
        kind."""
        kind = HealthKind(kind)
        answer = self._health(kind)
        return answer if self.health_overlay is None else self.health_overlay(kind, answer)

    def _health(self, kind: HealthKind) -> HealthAnswer:
        if not self._started:
            self.start()
        if kind is HealthKind.LIVE:
            return 200, {"status": "alive", "service": self.service}, {}
        snap = self.snapshot()
        # Health answers are public (the load balancer serves them): stable codes only, never last_error.
        for component in snap["components"].values():
            component.pop("last_error")
        if kind is HealthKind.STARTUP:
            return (200 if snap["ready"] else 503), snap, {}
        # ready
        if snap["ready"]:
            return 200, {"status": snap["status"], "service": self.service, "degraded": snap["degraded"]}, {}
        waiting = {
            n: c["error"] or {"code": c["status"]}
            for n, c in snap["components"].items()
            if c["priority"] == "critical" and c["status"] != "up"
        }
        return 503, {"status": snap["status"], "service": self.service, "waiting_for": waiting}, {"Retry-After": "2"}
