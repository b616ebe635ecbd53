"""The records every scenario produces: one request's outcome, one instance's start, a scenario's result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class RequestSpec:
    """One kind of request of a service's mix. ``body`` builds a fresh JSON body per request (a new user's
    email, say) when ``json`` would make every simulated user identical."""

    name: str
    method: str
    path: str
    json: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    ok: frozenset[int] = frozenset({200})
    body: Callable[[], dict[str, Any]] | None = None

    def payload(self) -> dict[str, Any] | None:
        return self.body() if self.body is not None else self.json


@dataclass
class Sample:
    """One logical request: possibly several attempts when the server asked to retry (503/429 + Retry-After)."""

    target: str
    instance: int
    request: str
    t_send: float  # seconds since the scenario's epoch
    latency_ms: float  # first send -> final answer, waiting included
    first_attempt_ms: float
    status: int | None
    attempts: int
    ok: bool
    cause: str | None = None  # why it failed, for the report

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["t_send"] = round(self.t_send, 4)
        data["latency_ms"] = round(self.latency_ms, 2)
        data["first_attempt_ms"] = round(self.first_attempt_ms, 2)
        return data


@dataclass
class InstanceRecord:
    """One fresh instance: when it was spawned, when its port opened, when it first answered correctly."""

    target: str
    index: int
    port: int
    t_spawn: float  # seconds since the scenario's epoch
    t_port: float | None = None
    t_first_ok: float | None = None
    error: str | None = None  # the instance died or never opened its port: the cause and its output tail

    @property
    def spawn_to_port_ms(self) -> float | None:
        return None if self.t_port is None else (self.t_port - self.t_spawn) * 1000

    @property
    def spawn_to_first_ok_ms(self) -> float | None:
        return None if self.t_first_ok is None else (self.t_first_ok - self.t_spawn) * 1000

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["spawn_to_port_ms"] = _round(self.spawn_to_port_ms)
        data["spawn_to_first_ok_ms"] = _round(self.spawn_to_first_ok_ms)
        return data


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@dataclass
class ScenarioResult:
    """What a scenario hands to the report: a status, its summary figures, its raw records."""

    number: int
    title: str
    status: str = "ok"  # ok | failures | not available | error
    reason: str | None = None  # for "not available" and "error": why, in one line
    summary: dict[str, Any] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)  # each with its cause
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)  # samples, instances, marks: for charts and re-analysis
    charts: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
