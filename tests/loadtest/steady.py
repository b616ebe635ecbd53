"""Scenario 4, steady load after warm-up: one warm instance per target under closed-loop load, so the cold
figures of scenarios 1 and 2 have a warm reference measured in the same run."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.loadtest import agent_runs
from tests.loadtest.client import call, new_client
from tests.loadtest.context import RunContext, ticking
from tests.loadtest.instances import Instance, stop_all_async
from tests.loadtest.model import Sample, ScenarioResult
from tests.loadtest.quiet import settle
from tests.loadtest.stats import failure_rows, latency_summary
from tests.loadtest.targets import Target


async def closed_loop(
    ctx: RunContext,
    target: Target,
    base_url: str,
    seconds: float,
    epoch: float,
    counts: dict[str, int],
    simulate_client: bool = True,
) -> list[Sample]:
    """``steady_concurrency`` clients, each sending the next request of the mix as soon as one answers."""
    specs = target.mix(ctx.mix)
    end = time.monotonic() + seconds
    samples: list[Sample] = []

    async def worker(n: int, client: Any) -> None:
        i = n
        while time.monotonic() < end:
            sample = await call(
                client,
                base_url,
                specs[i % len(specs)],
                target=target.name,
                instance=0,
                epoch=epoch,
                give_up_at=end + ctx.sizes.give_up_s,
                simulate_client=simulate_client,
            )
            samples.append(sample)
            counts["answered"] += 1
            counts["failed"] += 0 if sample.ok else 1
            i += 1

    async with new_client(ctx.sizes.steady_concurrency) as client:
        await asyncio.gather(*(worker(n, client) for n in range(ctx.sizes.steady_concurrency)))
    return samples


async def measure(ctx: RunContext, target: Target) -> tuple[dict[str, Any], list[Sample], str | None]:
    """Start one instance, wait for its first success, warm it up, then measure. The cause when it cannot."""
    epoch = time.monotonic()
    inst = Instance(target, 0, ctx.env, epoch, ctx.log_file(f"s4-{target.name}"))
    inst.spawn()
    counts = {"answered": 0, "failed": 0}
    phase = {"name": "starting"}
    try:
        if not await inst.wait_port(60):
            return {}, [], inst.record.error
        async with new_client(1) as client:
            first = await call(
                client,
                inst.url,
                target.mix(ctx.mix)[0],
                target=target.name,
                instance=0,
                epoch=epoch,
                give_up_at=time.monotonic() + ctx.sizes.give_up_s,
            )
        if not first.ok:
            return {}, [], f"never answered before the warm-up: {first.cause}; output tail: {inst.tail()}"
        line = lambda: (  # noqa: E731
            f"steady: {target.name}: {phase['name']}: {counts['answered']} answered, {counts['failed']} failed"
        )
        async with ticking(ctx.progress, line):
            phase["name"] = "warming up"
            await closed_loop(ctx, target, inst.url, ctx.sizes.warmup_s, epoch, {"answered": 0, "failed": 0})
            phase["name"] = "measuring"
            measured_from = time.monotonic()
            samples = await closed_loop(ctx, target, inst.url, ctx.sizes.steady_s, measured_from, counts)
        elapsed = time.monotonic() - measured_from
    finally:
        await stop_all_async([inst])
    summary = {
        "target": target.name,
        **latency_summary(samples),
        "throughput_rps": round(sum(1 for s in samples if s.ok) / elapsed, 1),
    }
    return summary, samples, None


async def run(ctx: RunContext) -> ScenarioResult:
    from tests.loadtest import first_event

    result = ScenarioResult(4, "Steady load after warm-up")
    since = await asyncio.to_thread(agent_runs.database_now, ctx.env.get("DATABASE_URL"))
    rows, samples_all = [], []
    for target in ctx.http_targets:
        await settle(ctx.progress, f"steady: before {target.name}", ctx.env.get("DATABASE_URL"))
        row, samples, error = await measure(ctx, target)
        if error:
            result.failures.append({"target": target.name, "request": "instance", "cause": error, "count": 1})
            continue
        rows.append(row)
        samples_all += samples
        ctx.progress.step(
            f"steady: {target.name}: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
            f"{row['throughput_rps']} req/s, {row['failed']} failed"
        )
    result.summary = {
        "rows": rows,
        "concurrency": ctx.sizes.steady_concurrency,
        "warmup_s": ctx.sizes.warmup_s,
        "steady_s": ctx.sizes.steady_s,
    }
    result.failures += failure_rows(samples_all)
    result.raw = {"samples": [s.to_json() for s in samples_all]}
    await settle(ctx.progress, "steady: runs of the posted messages", ctx.env.get("DATABASE_URL"))
    row = await asyncio.to_thread(agent_runs.failure, ctx.env.get("DATABASE_URL"), since, [ctx.log_file("stack")])
    if row:
        result.failures.append(row)
    try:
        await settle(ctx.progress, "steady: before post -> first event", ctx.env.get("DATABASE_URL"))
        result.summary["first_event"] = await first_event.measure(ctx)
    except Exception as exc:
        result.summary["first_event"] = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"[:500]}
    for error in result.summary["first_event"].get("errors", []):
        result.failures.append({"target": "ws-bridge", "request": "post -> first event", "cause": error, "count": 1})
    if result.summary["first_event"]["status"] == "error":
        result.failures.append(
            {
                "target": "ws-bridge",
                "request": "post -> first event",
                "cause": result.summary["first_event"]["reason"],
                "count": 1,
            }
        )
    result.status = "failures" if result.failures else "ok"
    return result
