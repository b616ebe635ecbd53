"""Plan limits, enforced where runs are posted and usage rows stored (docs/AUTH.md, Plans).

- runs per minute: a fixed one-minute window per user counted in Firestore by shared/ratelimit.py (one atomic
  increment per post, shared by every instance); over it, 429 ``runs_per_minute_limit`` with Retry-After.
- concurrent runs and the monthly spend cap: read from PostgreSQL (runs, cost_ledger) inside the transaction
  that creates the run, after locking the user's row, so concurrent posts of one user are decided one after
  the other and cannot overshoot; 429 ``concurrent_runs_limit`` (Retry-After) and 402 ``monthly_spend_cap``.
- usage rows stored: counted after the rows are inserted, under the same row lock, in the inserting
  transaction; over it the transaction rolls back: 403 ``usage_rows_limit``, nothing stored.

The plan is read from the users table at each check (not from the token), so an operator's change applies to
the next request.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.errors import ApiError, unauthorized
from shared.plans import DEFAULT_PLAN, PlanLimits, PlansSection
from shared.ratelimit import RateLimited, RateLimiter, Rule

LIMIT_CODES = (
    "runs_per_minute_limit",
    "concurrent_runs_limit",
    "monthly_spend_cap",
    "usage_rows_limit",
    "concurrent_requests",
)


class PlanLimit(ApiError):
    """A plan limit was reached; ``details`` names the plan, the limit and (for rates) when to retry."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any], retry_after: int | None = None):
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        if retry_after is not None:
            details = {**details, "retry_after_s": retry_after}
        super().__init__(status, code, message, details, headers)


def _runs(n: int) -> str:
    return f"{n} run{'' if n == 1 else 's'}"


def plan_of(db: Any, user_id: str, lock_wait_ms: int | None = None) -> str:
    """The stored plan of the user. With ``lock_wait_ms``: also lock the user's row until the transaction ends
    (serializes the checks of one user's concurrent requests); a request that waits longer than that behind the
    user's others is answered 429 ``concurrent_requests`` rather than running into the statement timeout. 401
    when the user no longer exists."""
    if lock_wait_ms is None:
        plan = db.scalar("SELECT plan FROM users WHERE id = %s", [user_id])
    else:
        from shared.db.connect import sqlstate

        # For this statement only: the caller's own lock_timeout (ingest sets one) applies to the rest.
        previous = db.scalar("SELECT current_setting('lock_timeout')")
        db.scalar("SELECT set_config('lock_timeout', %s, true)", [f"{int(lock_wait_ms)}ms"])
        try:
            plan = db.scalar("SELECT plan FROM users WHERE id = %s FOR UPDATE", [user_id])
        except Exception as exc:
            if sqlstate(exc) != "55P03":  # lock_not_available
                raise
            raise PlanLimit(
                429,
                "concurrent_requests",
                "too many of your requests are being handled at once; try again in 1 s",
                {"lock_wait_ms": lock_wait_ms},
                retry_after=1,
            ) from None
        db.scalar("SELECT set_config('lock_timeout', %s, true)", [previous])
    if plan is None:
        raise unauthorized("user no longer exists", "invalid_token")
    return str(plan or DEFAULT_PLAN)


def check_run_rate(limiter: RateLimiter, settings: PlansSection, user_id: str, plan: str) -> None:
    limits = settings.limits_of(plan)
    try:
        limiter.hit(Rule("runs", limits.runs_per_minute), user_id)
    except RateLimited as exc:
        raise PlanLimit(
            429,
            "runs_per_minute_limit",
            f"you have used your plan's {_runs(limits.runs_per_minute)} this minute; try again in {exc.retry_after} s",
            {"plan": plan, "limit": limits.runs_per_minute},
            retry_after=exc.retry_after,
        ) from None


def month_start(now: datetime | None = None) -> datetime:
    moment = now or datetime.now(UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(start: datetime) -> datetime:
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def check_run_caps(tx: Any, settings: Any, user_id: str) -> str:
    """Inside the transaction that creates the run: lock the user, then check concurrency and spend."""
    plan = plan_of(tx, user_id, settings.plan_lock_wait_ms)
    limits: PlanLimits = settings.limits_of(plan)
    # A run older than the time budget is failed by the worker whatever its row says: it must not hold a slot.
    active = int(
        tx.scalar(
            """SELECT count(*) FROM runs WHERE user_id = %s AND status IN ('queued', 'running')
                   AND created_at > now() - make_interval(secs => %s)""",
            [user_id, float(settings.run_time_budget_s)],
        )
    )
    if active >= limits.concurrent_runs:
        retry = settings.plan_concurrency_retry_after_s
        raise PlanLimit(
            429,
            "concurrent_runs_limit",
            f"your plan allows {_runs(limits.concurrent_runs)} at once and {active} are unfinished; "
            f"try again in {retry} s or when one finishes",
            {"plan": plan, "limit": limits.concurrent_runs, "active": active},
            retry_after=retry,
        )
    if limits.monthly_spend_usd is not None:
        start = month_start()
        spent = float(
            tx.scalar(
                "SELECT COALESCE(SUM(cost_usd), 0) FROM cost_ledger WHERE user_id = %s AND created_at >= %s",
                [user_id, start],
            )
        )
        if spent >= limits.monthly_spend_usd:
            resets = next_month(start)
            raise PlanLimit(
                402,
                "monthly_spend_cap",
                f"your plan's LLM spend of {limits.monthly_spend_usd:.2f} USD this month is used up "
                f"({spent:.2f} USD); runs resume on {resets.date().isoformat()} or with a larger plan",
                {
                    "plan": plan,
                    "limit_usd": limits.monthly_spend_usd,
                    "spent_usd": round(spent, 6),
                    "resets_at": resets.isoformat(),
                },
            )
    return plan


def lock_for_rows(tx: Any, settings: PlansSection, user_id: str) -> str:
    """Call first in a transaction that inserts usage rows: serializes one user's writers."""
    return plan_of(tx, user_id, settings.plan_lock_wait_ms)


def check_rows(tx: Any, settings: PlansSection, user_id: str, plan: str, received: int) -> None:
    """After the rows are inserted (same transaction): refuse, rolling everything back, above the plan's limit."""
    limit = settings.limits_of(plan).usage_rows
    if limit is None:
        return
    stored = int(tx.scalar("SELECT count(*) FROM usage_records WHERE user_id = %s", [user_id]))
    if stored > limit:
        raise PlanLimit(
            403,
            "usage_rows_limit",
            f"your plan stores at most {limit} usage rows; this request would make {stored}. Nothing was "
            "stored: delete older uploads (DELETE /api/usage) or move to a larger plan",
            {"plan": plan, "limit": limit, "stored_after": stored, "rows_received": received},
        )
