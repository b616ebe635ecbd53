"""Scenario 2, cold stack: the database, the emulators and every service start at the same moment, the
database several seconds late. Clients send from the moment each port opens and honour Retry-After; the
scenario passes when every request finally succeeded."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from emulators.postgres import EmbeddedPostgres, free_port
from emulators.process import ManagedProcess
from emulators.stack import Stack
from shared.config import REPO_ROOT
from tests.loadtest import agent_runs, setup
from tests.loadtest.client import call, new_client, wait_port
from tests.loadtest.context import RunContext, ticking
from tests.loadtest.instances import Instance, stop_all
from tests.loadtest.model import Sample, ScenarioResult
from tests.loadtest.quiet import settle
from tests.loadtest.stats import failure_rows, latency_summary, ratio, rounded
from tests.loadtest.targets import AGENT_API, AGENT_WORKER, AUTH, WS_BRIDGE, MixContext, Target

EMULATORS = {"pubsub": "emulators.pubsub", "firestore": "emulators.firestore"}
NEEDS_TOKEN = {AUTH.name, AGENT_API.name}
HARD_CAP_S = 90.0  # after the database starts: a target without a success by then has failed
THINK_S = 0.05  # pause between a client's requests: users click, they do not loop flat out


def prepare_database(pg: EmbeddedPostgres) -> None:
    """initdb and every migration ahead of time, then stop: the scenario is about the server being late,
    not about the migration job (scenario 1 of the list has its own test)."""
    pg.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "shared.db.migrate"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "DATABASE_URL": pg.url, "NETRA_ENV": "development"},
        )
        if done.returncode != 0:
            raise RuntimeError(f"migrations failed: {done.stderr[-1000:]}")
    finally:
        pg.stop()


def write_discovery(directory: Path, name: str, port: int, scheme: str = "http") -> None:
    """Every address is known before anything listens, as configuration is in the cloud."""
    directory.mkdir(parents=True, exist_ok=True)
    entry = {"name": name, "host": "127.0.0.1", "port": port, "url": f"{scheme}://127.0.0.1:{port}", "pid": None}
    (directory / f"{name}.json").write_text(json.dumps(entry))


class ColdStack:
    def __init__(self, ctx: RunContext, http_targets: list[Target], ws_targets: list[Target]) -> None:
        self.ctx = ctx
        self.base = Path(os.environ["NETRA_LOCAL_DIR"]).parent / "cold-stack"
        self.http_targets = http_targets
        components = setup.stack_components([*http_targets, *ws_targets])
        self.services: list[Target] = list(http_targets)
        if "agent-worker" in components:
            self.services.append(AGENT_WORKER)
        if "ws-bridge" in components and WS_BRIDGE in ws_targets:
            self.services.append(WS_BRIDGE)
        self.emulators = [n for n in EMULATORS if n in components]
        self.pg = EmbeddedPostgres(self.base / "postgres")
        self.ports = {t.name: free_port() for t in self.services} | {n: free_port() for n in self.emulators}
        self.marks: list[dict[str, Any]] = []
        self.epoch = 0.0
        self.instances: dict[str, Instance] = {}
        self.emulator_procs: list[ManagedProcess] = []
        self.db_up: float | None = None
        self.ready: set[str] = set()  # services whose /health/ready answered 200
        self.stop_at: float | None = None

    def mark(self, name: str, t_abs: float | None = None) -> float:
        t = (t_abs or time.monotonic()) - self.epoch
        self.marks.append({"name": name, "t": round(t, 3)})
        return t

    def env(self) -> dict[str, str]:
        stack = Stack(sink=None, env_overrides=dict(setup.STACK_ENV))
        stack.database_url = self.pg.url
        for name in self.emulators:
            stack.urls[name] = f"127.0.0.1:{self.ports[name]}"
        env = stack.service_env()
        env["NETRA_DISCOVERY_DIR"] = str(self.base / "discovery")
        env["NETRA_LOCAL_DIR"] = str(self.base / "local")
        return env

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    # -- the moment everything starts ---------------------------------------------------------------
    def start_all(self) -> None:
        env = self.env()
        for name, port in self.ports.items():
            write_discovery(self.base / "discovery", name, port)
        write_discovery(self.base / "discovery", "postgres", self.pg.port, scheme="postgresql")
        self.epoch = time.monotonic()
        for name in self.emulators:
            # The implementation `make run` uses (NETRA_EMULATORS); killed hard, the harness leaves none behind
            # (ManagedProcess and the launchers follow their parent: tests/emulators/test_no_orphans.py).
            argv = [sys.executable, "-m", EMULATORS[name], "--host", "127.0.0.1", "--port", str(self.ports[name])]
            proc = ManagedProcess(name, argv, sink=None, log_file=self.ctx.log_file(f"s2-{name}"))
            self.emulator_procs.append(proc.start())
        for target in self.services:
            inst = Instance(
                target, 0, env, self.epoch, self.ctx.log_file(f"s2-{target.name}"), port=self.ports[target.name]
            )
            self.instances[target.name] = inst.spawn()

    async def start_database_late(self) -> None:
        await asyncio.sleep(self.ctx.sizes.db_delay_s)
        self.mark("database starts")
        await asyncio.to_thread(self.pg.start)
        self.db_up = self.mark("database accepts connections")

    async def create_topology(self) -> None:
        """What Terraform does in the cloud; here as soon as the emulator listens."""
        if "pubsub" not in self.emulators:
            return
        proc = self.emulator_procs[self.emulators.index("pubsub")]
        await wait_port("127.0.0.1", self.ports["pubsub"], proc.alive, 60)
        self.mark("pubsub listening")
        stack = Stack(sink=None)
        stack.urls["pubsub"] = f"127.0.0.1:{self.ports['pubsub']}"
        worker = self.url("agent-worker") if "agent-worker" in self.ports else None
        deadline = time.monotonic() + 60
        while True:
            try:
                await asyncio.to_thread(stack.create_topology, worker)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        self.mark("pubsub topics created")

    async def watch_ready(self, target: Target) -> None:
        """The first 200 from /health/ready, as a mark on the timeline."""
        inst = self.instances[target.name]
        if not await inst.wait_port(HARD_CAP_S + self.ctx.sizes.db_delay_s):
            return
        self.mark(f"{target.name} port open", self.epoch + (inst.record.t_port or 0))
        if target.kind == "push" or target.floor_of:
            return
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            while self.stop_at is None or time.monotonic() < self.stop_at:
                try:
                    if (await client.get(inst.url + "/health/ready")).status_code == 200:
                        self.mark(f"{target.name} ready")
                        self.ready.add(target.name)
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)

    # -- clients -------------------------------------------------------------------------------------
    async def drive(
        self, target: Target, mix_task: asyncio.Task[MixContext], samples: list[Sample], counts: dict[str, int]
    ) -> None:
        inst = self.instances[target.name]
        hard_cap = self.epoch + self.ctx.sizes.db_delay_s + HARD_CAP_S
        while inst.record.t_port is None:  # watch_ready records it
            if inst.record.error or time.monotonic() > hard_cap:
                return
            await asyncio.sleep(0.005)
        mix = MixContext()
        if target.name in NEEDS_TOKEN:
            try:
                mix = await mix_task
            except Exception as exc:
                samples.append(
                    Sample(
                        target.name,
                        0,
                        "sign-in for the mix",
                        time.monotonic() - self.epoch,
                        0,
                        0,
                        None,
                        1,
                        False,
                        f"{type(exc).__name__}: {exc}",
                    )
                )
                return
        specs = target.mix(mix)

        async def worker(n: int, client: httpx.AsyncClient) -> None:
            i = n
            while self.stop_at is None or time.monotonic() < self.stop_at:
                sample = await call(
                    client,
                    inst.url,
                    specs[i % len(specs)],
                    target=target.name,
                    instance=0,
                    epoch=self.epoch,
                    give_up_at=hard_cap,
                )
                samples.append(sample)
                counts["answered"] += 1
                counts["failed"] += 0 if sample.ok else 1
                if sample.ok:
                    inst.first_ok(self.epoch + sample.t_send + sample.latency_ms / 1000)
                elif time.monotonic() > hard_cap:
                    return
                i += 1
                await asyncio.sleep(THINK_S)

        async with new_client(self.ctx.sizes.cold_workers) as client:
            await asyncio.gather(*(worker(n, client) for n in range(self.ctx.sizes.cold_workers)))

    async def wait_end(self) -> None:
        """Stop ``settle_s`` after the database is up, every target has succeeded once and said it is ready
        (a first success can come a poll before the ready mark), or at the cap."""
        hard_cap = self.epoch + self.ctx.sizes.db_delay_s + HARD_CAP_S
        while time.monotonic() < hard_cap:
            firsts = [self.instances[t.name].record.t_first_ok for t in self.http_targets]
            unready = [t for t in self.http_targets if not t.floor_of and t.name not in self.ready]
            if self.db_up is not None and all(f is not None for f in firsts) and not unready:
                self.stop_at = self.epoch + max([self.db_up, *firsts]) + self.ctx.sizes.settle_s  # type: ignore[type-var]
                break
            await asyncio.sleep(0.05)
        else:
            self.stop_at = hard_cap
        await asyncio.sleep(max(0.0, self.stop_at - time.monotonic()))

    def stop(self) -> None:
        stop_all(list(self.instances.values()))
        for proc in self.emulator_procs:
            proc.stop()
        self.pg.destroy()


async def run(ctx: RunContext, http_targets: list[Target], ws_targets: list[Target]) -> ScenarioResult:
    result = ScenarioResult(2, "Cold stack")
    cold = ColdStack(ctx, http_targets, ws_targets)
    ctx.progress.step("cold stack: preparing the database (initdb + migrations, then stopped)")
    await asyncio.to_thread(prepare_database, cold.pg)
    await asyncio.to_thread(setup.seed_warm_database, cold.pg.data_dir)
    samples: list[Sample] = []
    counts = {"answered": 0, "failed": 0}
    cold.start_all()
    ctx.progress.step(
        f"cold stack: started {', '.join([*cold.emulators, *cold.instances])} at once; "
        f"database in {ctx.sizes.db_delay_s:g}s"
    )
    try:
        background = [asyncio.create_task(cold.start_database_late()), asyncio.create_task(cold.create_topology())]
        background += [asyncio.create_task(cold.watch_ready(t)) for t in cold.services]
        urls = {name: cold.url(name) for name in cold.ports}
        mix_task = asyncio.create_task(
            setup.prepare_mix(urls, http_targets, ctx.sizes.db_delay_s + HARD_CAP_S, connect_retry=True)
        )
        drivers = [asyncio.create_task(cold.drive(t, mix_task, samples, counts)) for t in http_targets]
        line = lambda: (  # noqa: E731
            f"cold stack: t+{time.monotonic() - cold.epoch:.1f}s, database "
            f"{'up' if cold.db_up else 'down'}, {counts['answered']} answered, {counts['failed']} failed"
        )
        async with ticking(ctx.progress, line):
            await cold.wait_end()
            await asyncio.gather(*drivers)
        for task in [*background, mix_task]:
            task.cancel()
        if "agent-worker" in cold.instances:
            await settle(ctx.progress, "cold stack: runs of the posted messages", cold.pg.url, max_wait_s=60)
            row = await asyncio.to_thread(
                agent_runs.failure, cold.pg.url, datetime.fromtimestamp(0, UTC), [ctx.log_file("s2-agent-worker")]
            )
            if row:
                result.failures.append(row)
        errors = [t.exception() for t in background if t.done() and not t.cancelled() and t.exception()]
        for exc in errors:
            result.failures.append(
                {"target": "stack", "request": "setup", "cause": f"{type(exc).__name__}: {exc}", "count": 1}
            )
    finally:
        await asyncio.to_thread(cold.stop)
    result.summary = summarize(cold, samples)
    result.failures += failure_rows(samples)
    for target in http_targets:
        record = cold.instances[target.name].record
        if record.t_first_ok is None:
            result.failures.append(
                {
                    "target": target.name,
                    "request": "instance",
                    "cause": record.error or "no request succeeded before the cap",
                    "count": 1,
                }
            )
    result.status = "failures" if result.failures else "ok"
    result.raw = {
        "samples": [s.to_json() for s in samples],
        "marks": sorted(cold.marks, key=lambda m: m["t"]),
        "instances": [i.record.to_json() for i in cold.instances.values()],
    }
    return result


def summarize(cold: ColdStack, samples: list[Sample]) -> dict[str, Any]:
    floor = next((cold.instances[t.name].record.t_first_ok for t in cold.http_targets if t.floor_of), None)
    ready = {m["name"].removesuffix(" ready"): m["t"] for m in cold.marks if m["name"].endswith(" ready")}
    rows = []
    for target in cold.services:
        record = cold.instances[target.name].record
        first = record.t_first_ok
        row: dict[str, Any] = {
            "target": target.name,
            "port_open_s": rounded(record.t_port, 3),
            "ready_s": ready.get(target.name),
            "first_ok_s": rounded(first, 3),
            "first_ok_after_db_s": rounded(first - cold.db_up, 3) if first is not None and cold.db_up else None,
            "ratio_to_floor": ratio(first, floor),
        }
        mine = [s for s in samples if s.target == target.name]
        if mine:
            row.update(latency_summary(mine))
            row["answered_503_first"] = sum(1 for s in mine if s.attempts > 1)
        rows.append(row)
    return {
        "rows": rows,
        "db_delay_s": cold.ctx.sizes.db_delay_s,
        "db_up_s": rounded(cold.db_up, 3),
        "workers_per_target": cold.ctx.sizes.cold_workers,
        "settle_s": cold.ctx.sizes.settle_s,
        "emulators": cold.emulators,
    }
