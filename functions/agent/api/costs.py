"""GET /api/costs: what the user's own agent runs cost, from the cost ledger."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from functions.agent.api.jsonable import jsonable
from functions.agent.api.schemas import CostsQuery
from functions.agent.context import AgentContext
from functions.agent.store import ledger
from shared.errors import ApiError
from shared.http import Ctx, Router

MAX_RANGE = timedelta(days=366)
TOKEN_FIELDS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")


def _instant(value: datetime | date | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.combine(value, time.min)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def register(router: Router, deps: AgentContext) -> None:
    @router.route("GET", "/api/costs")
    def costs(ctx: Ctx) -> dict[str, Any]:
        user = deps.current_user(ctx)
        query = ctx.query(CostsQuery)
        end = _instant(query.to) or datetime.now(UTC)
        start = _instant(query.from_) or end - timedelta(days=30)
        if start >= end:
            raise ApiError(
                422, "validation_error", "from must be before to", [{"field": "from", "message": "must be before to"}]
            )
        if end - start > MAX_RANGE:
            raise ApiError(
                422,
                "validation_error",
                "the range may span at most 366 days",
                [{"field": "from", "message": "at most 366 days before to"}],
            )
        rows = ledger.cost_report(deps.db, user["id"], start, end, query.group_by)
        groups = [
            {
                "key": r["key"],
                "calls": int(r["calls"]),
                "runs": int(r["runs"]),
                **{f: int(r[f]) for f in TOKEN_FIELDS},
                "cost_usd": r["cost_usd"],
            }
            for r in rows
        ]
        totals = {f: sum(g[f] for g in groups) for f in ("calls", *TOKEN_FIELDS)}
        totals["cost_usd"] = sum((r["cost_usd"] for r in rows), start=0)
        return jsonable(
            {
                "from": start,
                "to": end,
                "group_by": query.group_by,
                "currency": "USD",
                "totals": totals,
                "groups": groups,
            }
        )
