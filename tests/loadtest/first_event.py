"""Scenario 4's WebSocket figure: on the warm stack, post a message and time the first agent event on a
socket subscribed to the thread (target: p50 within 100 ms)."""

from __future__ import annotations

from typing import Any

from tests.loadtest.context import RunContext


async def measure(ctx: RunContext) -> dict[str, Any]:
    missing = [n for n in ("auth", "agent-api", "agent-worker", "ws-bridge") if n not in ctx.stack_urls]
    if missing:
        return {"status": "not available", "reason": f"the warm stack has no {', '.join(missing)} yet"}
    return {"status": "not available", "reason": "not written yet"}
