"""Plans (free, early, mid, enterprise) and each plan's limits, read from the environment.

A user's plan is stored with the user (``users.plan``, migration 0006) and set by an operator
(``python -m functions.auth.admin set-plan EMAIL PLAN``). The agent API enforces the limits
(functions/agent/plans.py); auth shows the plan in ``/auth/me``, the validate answer and the token's ``plan``
claim. docs/AUTH.md (Plans) says what each limit counts and when a change takes effect.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode

PLANS: tuple[str, ...] = ("free", "early", "mid", "enterprise")
DEFAULT_PLAN = "free"
Plan = Literal["free", "early", "mid", "enterprise"]


class PlanLimits(BaseModel):
    """One plan's limits. ``null`` (None) means unlimited for the two caps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runs_per_minute: int = Field(ge=1, le=100_000, description="runs a user may post per minute")
    concurrent_runs: int = Field(ge=1, le=10_000, description="runs a user may have queued or running at once")
    usage_rows: int | None = Field(ge=0, description="usage rows a user may have stored (null: unlimited)")
    monthly_spend_usd: float | None = Field(
        ge=0, description="LLM cost per UTC calendar month from the cost ledger (null: unlimited)"
    )

    def __str__(self) -> str:  # the configuration reference shows the default as the JSON one would set
        return self.model_dump_json()


def _plan_field(limits: PlanLimits, who: str) -> PlanLimits:
    return Field(
        limits,
        description=f"limits of the {who} plan as JSON with all four keys: runs_per_minute, concurrent_runs, "
        "usage_rows and monthly_spend_usd (null: unlimited)",
    )


FREE = PlanLimits(runs_per_minute=20, concurrent_runs=2, usage_rows=100_000, monthly_spend_usd=5.0)


# NoDecode: the JSON is parsed by the validator below, which names the variable in its error (the settings
# source's own decoding would fail with an anonymous SettingsError).
LimitsValue = Annotated[PlanLimits, NoDecode]


class PlansSection(BaseSettings):
    """Per-plan limits the agent API enforces (docs/AUTH.md, Plans)."""

    plan_free: LimitsValue = _plan_field(FREE, "free")
    plan_early: LimitsValue = _plan_field(
        PlanLimits(runs_per_minute=60, concurrent_runs=4, usage_rows=1_000_000, monthly_spend_usd=50.0), "early"
    )
    plan_mid: LimitsValue = _plan_field(
        PlanLimits(runs_per_minute=120, concurrent_runs=8, usage_rows=10_000_000, monthly_spend_usd=500.0), "mid"
    )
    plan_enterprise: LimitsValue = _plan_field(
        PlanLimits(runs_per_minute=600, concurrent_runs=32, usage_rows=None, monthly_spend_usd=None), "enterprise"
    )
    plan_lock_wait_ms: int = Field(
        5000,
        ge=100,
        le=60_000,
        description="ms one user's request waits behind the user's other requests for the plan check before 429 "
        "concurrent_requests (below DB_STATEMENT_TIMEOUT_MS), e.g. 5000",
    )
    plan_concurrency_retry_after_s: int = Field(
        5, ge=1, le=300, description="Retry-After of a 429 concurrent_runs_limit in seconds, e.g. 5"
    )

    @field_validator("plan_free", "plan_early", "plan_mid", "plan_enterprise", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        # Settings are validated from the raw environment strings (shared/config.py: load_settings).
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError("must be a JSON object, e.g. " + str(FREE)) from None
        return value

    def limits_of(self, plan: str) -> PlanLimits:
        """The limits of ``plan``; an unknown stored value (a plan removed from the code) gets the free plan's."""
        return getattr(self, f"plan_{plan}", None) or self.plan_free
