"""Scenario 4's WebSocket figure: on the warm stack, post a message over HTTP and time the first agent event
(and the last) on a socket subscribed to the thread. Target: p50 within 100 ms."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from websockets.asyncio.client import connect

from shared.models.events import TERMINAL_EVENT_TYPES
from tests.loadtest import bridge
from tests.loadtest.client import new_client
from tests.loadtest.context import RunContext
from tests.loadtest.stats import percentile, rounded

WAIT_S = 30.0


async def measure(ctx: RunContext) -> dict[str, Any]:
    missing = [n for n in ("auth", "agent-api", "agent-worker", "ws-bridge") if n not in ctx.stack_urls]
    if missing:
        return {"status": "not available", "reason": f"the warm stack has no {', '.join(missing)}"}
    user = (await bridge.sign_in_users(ctx.stack_urls, 1, ctx.sizes.give_up_s))[0]
    ws_url = ctx.stack_urls["ws-bridge"].replace("http://", "ws://") + "/ws"
    firsts: list[float] = []
    lasts: list[float] = []
    errors: list[str] = []
    async with (
        connect(ws_url, subprotocols=bridge.subprotocols(user.token), open_timeout=WAIT_S) as ws,
        new_client(2) as client,
    ):
        await bridge.wait_frame(ws, "connection_established")
        await ws.send(json.dumps({"type": "subscribe", "thread_id": user.thread_id}))
        await bridge.wait_frame(ws, "subscribed")
        for i in range(ctx.sizes.first_event_samples + 1):  # the first run warms the worker: not counted
            posted = time.monotonic()
            run_id = await bridge.post_message(client, ctx.stack_urls["agent-api"], user, posted + WAIT_S)
            first = last = None
            try:
                async with asyncio.timeout(WAIT_S):
                    while last is None:
                        frame = json.loads(await ws.recv())
                        if frame.get("run_id") != run_id:
                            continue
                        now = (time.monotonic() - posted) * 1000
                        first = first if first is not None else now
                        if frame.get("type") in TERMINAL_EVENT_TYPES:
                            last = now
            except TimeoutError:
                errors.append(f"run {i}: {'no event' if first is None else 'no terminal event'} within {WAIT_S:g}s")
                continue
            if i > 0:
                firsts.append(first)
                lasts.append(last)
    ctx.progress.step(f"first event: p50 {percentile(firsts, 50) or float('nan'):.0f} ms over {len(firsts)} runs")
    return {
        "status": "ok" if not errors else "failures",
        "samples": len(firsts),
        "errors": errors,
        "p50_ms": rounded(percentile(firsts, 50)),
        "p90_ms": rounded(percentile(firsts, 90)),
        "max_ms": rounded(max(firsts, default=None)),
        "last_p50_ms": rounded(percentile(lasts, 50)),
        "first_ms": [round(f, 1) for f in firsts],
    }
