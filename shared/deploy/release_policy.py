"""What a canary release does and when its gate fails, per service and environment.

The values live in ``release_policy.toml`` beside this module (layers: ``[default]``, ``[env.<env>]``,
``[service.<name>]``, ``[env.<env>.service.<name>]``; later wins, key by key). Unknown keys are refused so
that a typo cannot silently loosen a gate.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.deploy.errors import DeployError

POLICY_FILE = Path(__file__).with_name("release_policy.toml")
ENVIRONMENTS = ("staging", "production")


class GatePolicy(BaseModel):
    """Candidate against stable over a trailing window of the candidate's current step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_s: int = Field(180, ge=60, lt=300, description="trailing window judged at each check (< 5 min)")
    check_interval_s: int = Field(60, ge=10, description="how often the gate is evaluated during a bake")
    ingest_delay_s: int = Field(
        180, ge=0, description="the window ends this long before now: Cloud Monitoring's ingestion delay"
    )
    min_requests: int = Field(100, ge=1, description="candidate requests in the window below which nothing is judged")
    max_5xx_share: float = Field(0.02, ge=0, le=1, description="absolute bound on the candidate's 5xx share")
    max_5xx_margin: float = Field(0.01, ge=0, le=1, description="...and the margin over the stable revision's share")
    max_p95_ms: float = Field(1500.0, ge=0, description="absolute bound on the candidate's p95 latency; 0 = not judged")
    max_p95_ratio: float = Field(1.25, ge=1, description="...and the ratio over the stable revision's p95")
    max_start_failures: int = Field(0, ge=0, description="instance start failures tolerated in the window")
    start_failure_metric: str = "logging.googleapis.com/user/netra/instance_start_failures"
    error_log_metrics: list[str] = Field(
        default_factory=lambda: ["logging.googleapis.com/user/netra/error_logs"],
        description="log-based metrics counting error log entries per revision",
    )
    max_error_log_share: float = Field(0.02, ge=0, description="error log entries per request, absolute bound")
    max_error_log_margin: float = Field(0.01, ge=0, description="...and the margin over the stable revision's")
    insufficient_traffic: Literal["hold", "promote_after_bake"] = Field(
        "hold", description="too few requests to judge: keep the step (hold) or advance once the bake time is over"
    )
    hold_timeout_s: int = Field(1800, ge=0, description="a held step rolls back after the bake time plus this")


class ReleasePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: list[int] = Field(default_factory=lambda: [5, 25, 50, 100], description="traffic percent per step")
    bake_s: int = Field(360, ge=0, description="minimum time at each step before the next")
    smoke_path: str = Field("/health/ready", description="GET on the candidate's tagged URL before any traffic")
    ready_timeout_s: int = Field(600, ge=0, description="how long to wait for the candidate to become ready")
    gate: GatePolicy = Field(default_factory=GatePolicy)  # type: ignore[arg-type]

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[int]) -> list[int]:
        if not steps or steps[-1] != 100:
            raise ValueError("must end with 100")
        if any(not 0 < s <= 100 for s in steps) or any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError("must be strictly increasing percentages in 1..100")
        return steps

    @field_validator("smoke_path")
    @classmethod
    def _path(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("must start with /")
        return path


def _merge(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in layer.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_policy(service: str, environment: str, path: Path = POLICY_FILE, **overrides: Any) -> ReleasePolicy:
    """The merged policy of ``service`` in ``environment``; ``overrides`` (e.g. from the command line) win."""
    if environment not in ENVIRONMENTS:
        raise DeployError("bad_environment", f"environment must be one of {', '.join(ENVIRONMENTS)}")
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DeployError("bad_policy", f"{path.name}: {exc}") from None
    unknown = set(raw) - {"default", "env", "service"} or set(raw.get("env", {})) - set(ENVIRONMENTS)
    if unknown:
        raise DeployError("bad_policy", f"{path.name}: unknown section(s) {', '.join(sorted(unknown))}")
    env_layer = dict(raw.get("env", {}).get(environment, {}))
    env_services = env_layer.pop("service", {})
    merged: dict[str, Any] = {}
    for layer in (
        raw.get("default", {}),
        env_layer,
        raw.get("service", {}).get(service, {}),
        env_services.get(service, {}),
    ):
        merged = _merge(merged, layer)
    merged = _merge(merged, overrides)
    try:
        return ReleasePolicy.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise DeployError("bad_policy", f"{path.name} ({service}, {environment}): {problems}") from None
