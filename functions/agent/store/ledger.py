"""The cost ledger: one row per LLM call made on a user's behalf, priced from the shared catalog."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from functions.agent.pipeline_api import TokenUsage
from shared.db.database import Database

log = logging.getLogger("agent.ledger")


_unpriced: set[str] = set()


def price(model: str, usage: TokenUsage) -> Decimal:
    """Cost of one call from ``shared.pricing`` (the catalog owned by the optimization issue).

    A model the catalog does not know (or a missing catalog) costs 0 and is logged once per model: the call
    happened and its tokens are still recorded, so it can be re-priced later; failing the run would not help.
    """
    try:
        from shared.pricing import cost_usd

        return Decimal(str(cost_usd(model, usage))).quantize(Decimal("0.00000001"))
    except Exception as exc:
        if model not in _unpriced:
            _unpriced.add(model)
            log.warning(
                "no price for model; recorded at 0 USD",
                extra={"model": model, "reason": f"{type(exc).__name__}: {exc}"},
            )
        return Decimal(0)


def record_call(
    db: Database,
    *,
    user_id: str,
    run_id: str | None,
    thread_id: str | None,
    provider: str,
    model: str,
    usage: TokenUsage,
    cost: Decimal,
    purpose: str,
    latency_ms: float,
    attempts: int,
) -> int:
    return int(
        db.scalar(
            """INSERT INTO cost_ledger (user_id, run_id, thread_id, provider, model, input_tokens, cached_input_tokens,
                                    cache_write_tokens, output_tokens, reasoning_tokens, cost_usd, purpose,
                                    latency_ms, call_attempts)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            [
                user_id,
                run_id,
                thread_id,
                provider,
                model,
                *usage.as_tuple(),
                cost,
                purpose or None,
                int(latency_ms),
                attempts,
            ],
        )
    )


GROUPS = {
    "model": "provider || ':' || model",
    "day": "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "thread": "COALESCE(thread_id::text, '')",
}


def cost_report(db: Database, user_id: str, start: Any, end: Any, group_by: str) -> list[dict[str, Any]]:
    key = GROUPS[group_by]
    return db.all(
        f"""SELECT {key} AS key, count(*) AS calls,
                   SUM(input_tokens) AS input_tokens, SUM(cached_input_tokens) AS cached_input_tokens,
                   SUM(cache_write_tokens) AS cache_write_tokens, SUM(output_tokens) AS output_tokens,
                   SUM(reasoning_tokens) AS reasoning_tokens, SUM(cost_usd) AS cost_usd,
                   count(DISTINCT run_id) AS runs
              FROM cost_ledger
             WHERE user_id = %s AND created_at >= %s AND created_at < %s
             GROUP BY 1 ORDER BY SUM(cost_usd) DESC, 1""",
        [user_id, start, end],
    )
