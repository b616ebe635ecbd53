"""Scenario 5, remote mode: the same request mix against deployed URLs with a token.

A cold measurement is the first request after ``--remote-force-cold`` ran (for example a gcloud command that
deploys a new revision, see docs/performance/loadtest.md), then a burst on the new revision, then steady load
for the warm reference. Without that command the first request is only cold if the service sat idle long
enough to scale to zero, and the report says so. Not verified against Google Cloud from this machine.

Without deployed URLs, `make loadtest` runs the same code against the local warm stack as a stand-in: there
"forcing a new revision" is starting a fresh local instance and waiting for its port (what `gcloud run deploy`
waits for), so every line of this module runs in each full run; the report labels those figures as local.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

from tests.loadtest.client import call, new_client, request_json
from tests.loadtest.context import RunContext
from tests.loadtest.instances import Instance, stop_all_async
from tests.loadtest.model import RequestSpec, Sample, ScenarioResult
from tests.loadtest.stats import failure_rows, latency_summary, median, ratio, rounded
from tests.loadtest.steady import closed_loop
from tests.loadtest.targets import AGENT_API, AUTH, EMPTY, MixContext, Target

REMOTE_TARGETS = {"empty": EMPTY, "auth": AUTH, "agent": AGENT_API}
LOCAL_WARM_S = 3.0  # the stand-in's warm reference: scenario 4 has the full one
LOCAL_SAMPLES = 2  # the stand-in's cold measurements per target (it proves the code path)
NOT_VERIFIED = (
    "not verified here: this machine cannot reach Google Cloud, so remote mode has only run against "
    "local processes standing in for deployed URLs"
)


def remote_mix(target: Target, mix: MixContext) -> list[RequestSpec]:
    """Dev login is refused outside development, so the deployed auth mix is token validation only."""
    return [s for s in target.mix(mix) if s.name != "dev login"]


def force_cold(command: str) -> float:
    started = time.monotonic()
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=900)  # noqa: S602 - the operator's own command
    if done.returncode != 0:
        raise RuntimeError(f"--remote-force-cold exited with {done.returncode}: {done.stderr.strip()[-500:]}")
    return time.monotonic() - started


class Deployed:
    """Deployed URLs; a cold start is forced by the operator's command (a new revision), if given."""

    local = False

    def __init__(self, urls: dict[str, str], command: str | None) -> None:
        self.urls = urls
        self.command = command

    @property
    def forces_cold(self) -> bool:
        return bool(self.command)

    async def cold(self, name: str) -> tuple[str, float | None]:
        """The URL to measure and how long forcing the cold start took (None: not forced). ``{service}`` in
        the command becomes the service measured (empty, auth, agent-api): one command serves every URL."""
        if not self.command:
            return self.urls[name], None
        command = self.command.replace("{service}", REMOTE_TARGETS[name].name)
        return self.urls[name], await asyncio.to_thread(force_cold, command)

    async def close(self) -> None:
        return None


class LocalStandIn:
    """The warm local stack standing in for a deployment: each "new revision" is a fresh local instance,
    measured from the moment its port opens (a deploy command returns once the revision listens)."""

    local = True
    forces_cold = True

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.instances: dict[str, Instance] = {}
        self.count = 0

    async def cold(self, name: str) -> tuple[str, float | None]:
        old = self.instances.pop(name, None)
        if old is not None:
            await stop_all_async([old])
        started = time.monotonic()
        self.count += 1
        inst = Instance(
            REMOTE_TARGETS[name], self.count, self.ctx.env, started, self.ctx.log_file(f"s5-{name}-{self.count}")
        )
        self.instances[name] = inst.spawn()
        if not await inst.wait_port(60):
            raise RuntimeError(f"local stand-in for {name} did not start: {inst.record.error}")
        return inst.url, time.monotonic() - started

    async def close(self) -> None:
        await stop_all_async(list(self.instances.values()))
        self.instances.clear()


async def measure(
    ctx: RunContext, name: str, where: Deployed | LocalStandIn, mix: MixContext
) -> tuple[dict[str, Any], list[Sample]]:
    target = REMOTE_TARGETS[name]
    specs = remote_mix(target, mix)
    rounds = int(ctx.remote.get("samples") or 1) if where.forces_cold else 1
    rounds = min(rounds, LOCAL_SAMPLES) if where.local else rounds
    colds: list[float] = []
    samples: list[Sample] = []
    bursts: list[Sample] = []
    url = ""
    for _ in range(rounds):
        url, forced_s = await where.cold(name)
        epoch = time.monotonic()
        give_up_at = epoch + ctx.sizes.give_up_s
        async with new_client(ctx.sizes.burst) as client:
            first = await call(
                client,
                url,
                specs[0],
                target=name,
                instance=0,
                epoch=epoch,
                give_up_at=give_up_at,
                simulate_client=False,
            )
            samples.append(first)
            if first.ok:
                colds.append(first.latency_ms)
            burst = await asyncio.gather(
                *(
                    call(
                        client,
                        url,
                        specs[i % len(specs)],
                        target=name,
                        instance=0,
                        epoch=epoch,
                        give_up_at=give_up_at,
                        simulate_client=False,
                    )
                    for i in range(ctx.sizes.burst)
                )
            )
            bursts += burst
        if where.local:
            how = f"fresh local instance, port open after {forced_s:.1f}s"
        else:
            how = f"after forcing a new revision in {forced_s:.0f}s" if forced_s is not None else "not forced cold"
        ctx.progress.step(f"remote: {name}: first request {first.latency_ms:.0f} ms ({how})")
    warm_s = min(ctx.sizes.steady_s, LOCAL_WARM_S) if where.local else ctx.sizes.steady_s
    warm = await closed_loop(
        ctx,
        Target(name, target.source, target.argv, mix=lambda m: specs),
        url,
        warm_s,
        time.monotonic(),
        {"answered": 0, "failed": 0},
        simulate_client=False,
    )
    row = {
        "target": name,
        "url": url,
        "forced_cold": where.forces_cold,
        "cold_measurements": len(colds),
        "first_request_ms": rounded(median(colds)),
        "burst": latency_summary(bursts),
        "warm": latency_summary(warm),
    }
    return row, samples + bursts + warm


def deployed_urls(ctx: RunContext) -> dict[str, str]:
    return {name: url.rstrip("/") for name, url in ctx.remote.get("urls", {}).items() if url}


def stand_in_names(ctx: RunContext) -> list[str]:
    """The remote targets the warm local stack can stand in for (primed, so known to start)."""
    primed = {t.name for t in ctx.http_targets}
    return [name for name, target in REMOTE_TARGETS.items() if target.name in primed]


async def run(ctx: RunContext) -> ScenarioResult:
    result = ScenarioResult(5, "Remote mode")
    urls = deployed_urls(ctx)
    where: Deployed | LocalStandIn
    if urls:
        where = Deployed(urls, ctx.remote.get("force_cold"))
        names = [n for n in REMOTE_TARGETS if n in urls]
        mix = MixContext(token=ctx.remote.get("token"))
        agent_url = urls.get("agent")
    elif ctx.env and stand_in_names(ctx):
        where = LocalStandIn(ctx)
        names = stand_in_names(ctx)
        mix = MixContext(token=ctx.mix.token)
        agent_url = ctx.stack_urls.get("agent-api")
        result.notes.append(
            "no deployed URLs given: the local warm stack stood in for the deployment (a fresh "
            "local instance per forced cold start); these are local figures, not Cloud Run's"
        )
    else:
        result.status = "not available"
        result.reason = (
            "no deployed URLs given (--remote-empty-url/--remote-auth-url/--remote-agent-url/"
            "--remote-ws-url or LOADTEST_REMOTE_*_URL) and no local stack to stand in"
        )
        result.notes.append(NOT_VERIFIED)
        return result
    if "agent" in names and agent_url and mix.token:
        async with new_client(2) as client:
            body = await request_json(
                client,
                "POST",
                f"{agent_url}/api/threads",
                json={"title": "load test"},
                headers=mix.bearer(),
                give_up_at=time.monotonic() + ctx.sizes.give_up_s,
            )
            mix.thread_id = str(body["id"])
    rows, samples = [], []
    try:
        for name in names:
            row, mine = await measure(ctx, name, where, mix)
            rows.append(row)
            samples += mine
    finally:
        await where.close()
    if "ws" in urls:
        result.notes.append("the WebSocket URL was given but the remote storm is not wired in yet")
    floor = next((r["first_request_ms"] for r in rows if r["target"] == "empty"), None)
    for row in rows:
        row["ratio_to_floor"] = ratio(row["first_request_ms"], floor)
    result.summary = {"rows": rows, "force_cold": where.forces_cold, "local_stand_in": where.local}
    result.failures = failure_rows(samples)
    result.status = "failures" if result.failures else "ok"
    result.notes.append(NOT_VERIFIED)
    if not where.forces_cold:
        result.notes.append(
            "no --remote-force-cold command: the first request is cold only if the service had "
            "scaled to zero (idle for about 15 minutes)"
        )
    result.raw = {"samples": [s.to_json() for s in samples]}
    return result
