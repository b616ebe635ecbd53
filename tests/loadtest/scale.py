"""Scenario 1, scale from zero: K fresh instances of a service start together while its dependencies are
up, and each gets a burst of concurrent requests the moment its port opens."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tests.loadtest import agent_runs
from tests.loadtest.client import LoopLag, call, new_client
from tests.loadtest.context import RunContext, ticking
from tests.loadtest.instances import Instance, stop_all_async
from tests.loadtest.model import InstanceRecord, Sample, ScenarioResult
from tests.loadtest.quiet import settle
from tests.loadtest.stats import failure_rows, latency_summary, median, ratio, rounded
from tests.loadtest.targets import Target

TARGET_RATIO = 1.5


@dataclass
class Batch:
    target: str
    k: int
    round: int
    instances: list[InstanceRecord]
    samples: list[Sample]
    loop_lag_max_ms: float = 0.0
    settled_s: float = 0.0  # waited for the machine to go quiet before this batch
    pending_runs: int = 0  # agent runs still queued when it began (stuck ones: see quiet.py)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "k": self.k,
            "round": self.round,
            "loop_lag_max_ms": self.loop_lag_max_ms,
            "settled_s": self.settled_s,
            "pending_runs": self.pending_runs,
            "instances": [i.to_json() for i in self.instances],
            "samples": [s.to_json() for s in self.samples],
        }


async def run_batch(ctx: RunContext, target: Target, k: int, round_no: int) -> Batch:
    sizes = ctx.sizes
    specs = target.mix(ctx.mix)
    epoch = time.monotonic()
    instances = [
        Instance(target, i, ctx.env, epoch, ctx.log_file(f"s1-{target.name}-k{k}-r{round_no}-i{i}")) for i in range(k)
    ]
    clients = [new_client(sizes.burst) for _ in instances]
    counts = {"open": 0, "answered": 0, "failed": 0}
    lag = LoopLag()

    async def drive(inst: Instance, client: Any, pool: ThreadPoolExecutor) -> list[Sample]:
        """The first request of the burst goes from the instance's watcher thread, the rest from this loop."""
        loop = asyncio.get_running_loop()
        opened = asyncio.Event()
        first = loop.run_in_executor(
            pool, inst.watch_in_thread, specs[0], sizes.give_up_s, lambda: loop.call_soon_threadsafe(opened.set)
        )
        await opened.wait()
        if inst.record.t_port is None:
            await first
            return []
        counts["open"] += 1
        give_up_at = time.monotonic() + sizes.give_up_s

        async def one(i: int) -> Sample:
            sample = await call(
                client,
                inst.url,
                specs[i % len(specs)],
                target=target.name,
                instance=inst.record.index,
                epoch=epoch,
                give_up_at=give_up_at,
            )
            counts["answered"] += 1
            counts["failed"] += 0 if sample.ok else 1
            if sample.ok:
                inst.first_ok(epoch + sample.t_send + sample.latency_ms / 1000)
            return sample

        rest = list(await asyncio.gather(*(one(i) for i in range(1, sizes.burst))))
        head = await first
        return ([head] if head else []) + rest

    line = lambda: (  # noqa: E731
        f"scale from zero: {target.name} K={k} round {round_no + 1}: ports open {counts['open']}/{k}, "
        f"answered {counts['answered']}/{k * sizes.burst}, failed {counts['failed']}"
    )
    with ThreadPoolExecutor(max_workers=k, thread_name_prefix="watch") as pool:
        for inst in instances:
            inst.spawn()
        try:
            async with ticking(ctx.progress, line), lag.watching():
                per_instance = await asyncio.gather(
                    *(drive(i, c, pool) for i, c in zip(instances, clients, strict=True))
                )
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))
            await stop_all_async(instances)
    for inst in instances:
        if inst.record.error is None and inst.record.t_first_ok is None:
            inst.fail("no request of the burst succeeded")
    samples = [s for group in per_instance for s in group]
    return Batch(target.name, k, round_no, [i.record for i in instances], samples, round(lag.max_ms, 1))


def summarize(batches: list[Batch], targets: list[Target], ks: tuple[int, ...]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    floors: dict[int, float | None] = {}
    for k in ks:
        for target in targets:
            group = [b for b in batches if b.target == target.name and b.k == k]
            records = [r for b in group for r in b.instances]
            samples = [s for b in group for s in b.samples]
            first_ok = median(r.spawn_to_first_ok_ms for r in records)
            if target.floor_of:
                floors[k] = first_ok
            row = {
                "target": target.name,
                "k": k,
                "instances": len(records),
                "instances_failed": sum(1 for r in records if r.error),
                "spawn_to_port_ms": rounded(median(r.spawn_to_port_ms for r in records)),
                "spawn_to_first_ok_ms": rounded(first_ok),
                "spawn_to_first_ok_max_ms": rounded(
                    max((r.spawn_to_first_ok_ms for r in records if r.spawn_to_first_ok_ms is not None), default=None)
                ),
                "ratio_to_floor": ratio(first_ok, floors.get(k)),
                **{f"burst_{key}": value for key, value in latency_summary(samples).items()},
                "client_loop_lag_max_ms": max((b.loop_lag_max_ms for b in group), default=None),
            }
            row["meets_target"] = None if row["ratio_to_floor"] is None else row["ratio_to_floor"] <= TARGET_RATIO
            rows.append(row)
    return rows


async def run(ctx: RunContext) -> ScenarioResult:
    result = ScenarioResult(1, "Scale from zero")
    targets = ctx.http_targets
    since = await asyncio.to_thread(agent_runs.database_now, ctx.env.get("DATABASE_URL"))
    batches: list[Batch] = []
    sizes = ctx.sizes
    for round_no in range(max(sizes.rounds, sizes.k1_rounds if 1 in sizes.ks else 0)):
        for k in sizes.ks:
            if round_no >= (sizes.k1_rounds if k == 1 else sizes.rounds):
                continue
            for target in targets:  # the floor first, so each ratio compares neighbours in time
                quiet = await settle(
                    ctx.progress, f"scale from zero: before {target.name} K={k}", ctx.env.get("DATABASE_URL")
                )
                batch = await run_batch(ctx, target, k, round_no)
                batch.settled_s, batch.pending_runs = quiet.waited_s, quiet.pending_runs
                batches.append(batch)
                records = batch.instances
                ok = [r.spawn_to_first_ok_ms for r in records if r.spawn_to_first_ok_ms is not None]
                failed = sum(1 for s in batch.samples if not s.ok)
                ctx.progress.step(
                    f"scale from zero: {target.name} K={k} round {round_no + 1}: first success "
                    f"median {median(ok) or float('nan'):.0f} ms, {failed} failed request(s)"
                )
    result.summary = {
        "rows": summarize(batches, targets, ctx.sizes.ks),
        "burst": ctx.sizes.burst,
        "rounds": ctx.sizes.rounds,
        "k1_rounds": ctx.sizes.k1_rounds,
        "target_ratio": TARGET_RATIO,
        "mix": {t.name: [s.name for s in t.mix(ctx.mix)] for t in targets},
    }
    all_samples = [s for b in batches for s in b.samples]
    result.failures = failure_rows(all_samples)
    for b in batches:
        for r in b.instances:
            if r.error:
                result.failures.append(
                    {
                        "target": r.target,
                        "request": f"instance {r.index} (K={b.k}, round {b.round + 1})",
                        "cause": r.error,
                        "count": 1,
                    }
                )
    await settle(ctx.progress, "scale from zero: runs of the posted messages", ctx.env.get("DATABASE_URL"))
    row = await asyncio.to_thread(agent_runs.failure, ctx.env.get("DATABASE_URL"), since, [ctx.log_file("stack")])
    if row:
        result.failures.append(row)
    result.status = "failures" if result.failures else "ok"
    result.raw = {"batches": [b.to_json() for b in batches]}
    return result
