"""Scenario 5, remote mode: the same request mix against deployed URLs with a token.

A cold measurement is the first request after ``--remote-force-cold`` ran (for example a gcloud command that
deploys a new revision, see docs/performance/loadtest.md), then a burst on the new revision, then steady load
for the warm reference. Without that command the first request is only cold if the service sat idle long
enough to scale to zero, and the report says so. Not verified against Google Cloud from this machine.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

from tests.loadtest.client import call, new_client, request_json
from tests.loadtest.context import RunContext
from tests.loadtest.model import RequestSpec, Sample, ScenarioResult
from tests.loadtest.stats import failure_rows, latency_summary, median, ratio, rounded
from tests.loadtest.steady import closed_loop
from tests.loadtest.targets import AGENT_API, AUTH, EMPTY, MixContext, Target

REMOTE_TARGETS = {"empty": EMPTY, "auth": AUTH, "agent": AGENT_API}
NOT_VERIFIED = ("not verified here: this machine cannot reach Google Cloud, so remote mode has only run against "
                "local processes standing in for deployed URLs")


def remote_mix(target: Target, mix: MixContext) -> list[RequestSpec]:
    """Dev login is refused outside development, so the deployed auth mix is token validation only."""
    return [s for s in target.mix(mix) if s.name != "dev login"]


def force_cold(command: str) -> float:
    started = time.monotonic()
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=900)  # noqa: S602 - the operator's own command
    if done.returncode != 0:
        raise RuntimeError(f"--remote-force-cold exited with {done.returncode}: {done.stderr.strip()[-500:]}")
    return time.monotonic() - started


async def measure(ctx: RunContext, name: str, url: str, mix: MixContext) -> tuple[dict[str, Any], list[Sample]]:
    target = REMOTE_TARGETS[name]
    specs = remote_mix(target, mix)
    command = ctx.remote.get("force_cold")
    rounds = int(ctx.remote.get("samples") or 1) if command else 1
    colds: list[float] = []
    samples: list[Sample] = []
    bursts: list[Sample] = []
    for _ in range(rounds):
        forced_s = await asyncio.to_thread(force_cold, command) if command else None
        epoch = time.monotonic()
        give_up_at = epoch + ctx.sizes.give_up_s
        async with new_client(ctx.sizes.burst) as client:
            first = await call(client, url, specs[0], target=name, instance=0, epoch=epoch, give_up_at=give_up_at,
                               simulate_client=False)
            samples.append(first)
            if first.ok:
                colds.append(first.latency_ms)
            burst = await asyncio.gather(*(call(client, url, specs[i % len(specs)], target=name, instance=0,
                                                epoch=epoch, give_up_at=give_up_at, simulate_client=False)
                                           for i in range(ctx.sizes.burst)))
            bursts += burst
        how = f"after forcing a new revision in {forced_s:.0f}s" if forced_s is not None else "not forced cold"
        ctx.progress.step(f"remote: {name}: first request {first.latency_ms:.0f} ms ({how})")
    warm = await closed_loop(ctx, Target(name, target.source, target.argv, mix=lambda m: specs), url,
                             ctx.sizes.steady_s, time.monotonic(), {"answered": 0, "failed": 0}, simulate_client=False)
    row = {"target": name, "url": url, "forced_cold": bool(command), "cold_measurements": len(colds),
           "first_request_ms": rounded(median(colds)), "burst": latency_summary(bursts),
           "warm": latency_summary(warm)}
    return row, samples + bursts + warm


async def run(ctx: RunContext) -> ScenarioResult:
    result = ScenarioResult(5, "Remote mode")
    urls = {name: url.rstrip("/") for name, url in ctx.remote.get("urls", {}).items() if url}
    if not urls:
        result.status = "not available"
        result.reason = ("no deployed URLs given (--remote-empty-url/--remote-auth-url/--remote-agent-url/"
                         "--remote-ws-url or LOADTEST_REMOTE_*_URL)")
        result.notes.append(NOT_VERIFIED)
        return result
    mix = MixContext(token=ctx.remote.get("token"))
    if "agent" in urls and mix.token:
        async with new_client(2) as client:
            body = await request_json(client, "POST", f"{urls['agent']}/api/threads", json={"title": "load test"},
                                      headers=mix.bearer(), give_up_at=time.monotonic() + ctx.sizes.give_up_s)
            mix.thread_id = str(body["id"])
    rows, samples = [], []
    for name in ("empty", "auth", "agent"):
        if name in urls:
            row, mine = await measure(ctx, name, urls[name], mix)
            rows.append(row)
            samples += mine
    if "ws" in urls:
        result.notes.append("the WebSocket URL was given but the remote storm is not wired in yet")
    floor = next((r["first_request_ms"] for r in rows if r["target"] == "empty"), None)
    for row in rows:
        row["ratio_to_floor"] = ratio(row["first_request_ms"], floor)
    result.summary = {"rows": rows, "force_cold": bool(ctx.remote.get("force_cold"))}
    result.failures = failure_rows(samples)
    result.status = "failures" if result.failures else "ok"
    result.notes.append(NOT_VERIFIED)
    if not ctx.remote.get("force_cold"):
        result.notes.append("no --remote-force-cold command: the first request is cold only if the service had "
                            "scaled to zero (idle for about 15 minutes)")
    result.raw = {"samples": [s.to_json() for s in samples]}
    return result
