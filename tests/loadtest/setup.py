"""Before the scenarios: an isolated local stack, each target started once (checks it, compiles its
bytecode so the first measured spawn is not the only one paying for it), and the mix's token and thread."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import httpx

from emulators.stack import ALL_NAMES, SERVICES, Stack, local_dir
from tests.fixtures.plans import GENEROUS_PLAN_ENV
from tests.loadtest.client import call, new_client, request_json
from tests.loadtest.context import RunContext
from tests.loadtest.instances import Instance, stop_all_async
from tests.loadtest.progress import Progress
from tests.loadtest.targets import AGENT_API, AUTH, WS_BRIDGE, MixContext, Target

INFRA = ("postgres", "pubsub", "firestore")

# The local stack runs ONE agent worker with THREADS=32 but its default of 4 run slots, and the Pub/Sub
# emulator pushes up to 64 messages at once with no flow control and (no retry_policy in the local topology)
# a 100 ms redelivery backoff: a burst of posted messages makes the worker refuse deliveries 5..n with 429,
# and after 5 refusals within about 1.5 s the message is dead-lettered and its run stays "queued". In the
# cloud the worker's Cloud Run concurrency equals its slots (terraform functions.tf: 4), so extra deliveries
# queue or go to another instance instead, with Terraform's 10 s..600 s backoff. Giving the one local worker
# as many slots as it has threads makes it behave like that fleet (gunicorn queues what exceeds its threads);
# any run still lost is reported by agent_runs.py.
# A few users post every run of the load: plan limits are not what is measured (tests/agent/test_plans.py).
STACK_ENV = {"MAX_CONCURRENT_RUNS": "32", **GENEROUS_PLAN_ENV}


def stack_components(targets: list[Target]) -> set[str]:
    """Everything the available targets need, closed under the stack's own service dependencies. With the agent
    API or the bridge under test, the worker and the bridge run too (when their code exists): posted messages
    are really processed, and the warm stack can time post -> first WebSocket event."""
    wanted: set[str] = set()
    for target in targets:
        wanted.update(target.needs)
    if AGENT_API in targets or WS_BRIDGE in targets:
        wanted.update({"agent-worker", "ws-bridge"} & _present_services())
    specs = {s.name: s for s in SERVICES}
    pending = list(wanted)
    while pending:
        name = pending.pop()
        for need in specs[name].needs if name in specs else ():
            if need not in wanted:
                wanted.add(need)
                pending.append(need)
    return wanted & set(ALL_NAMES)


def _present_services() -> set[str]:
    from shared.config import REPO_ROOT

    present = set()
    if (REPO_ROOT / "functions/agent/main.py").exists():
        present.add("agent-worker")
    if (REPO_ROOT / "functions/ws_bridge/main.py").exists():
        present.add("ws-bridge")
    return present


def start_stack(components: set[str], log_path: Path) -> Stack:
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the stack; closed in stop_stack
    stack = Stack(only=components, sink=log, env_overrides=dict(STACK_ENV))
    try:
        stack.up()
    except BaseException:
        stack.down()
        log.close()
        raise
    return stack


def dependents(name: str, components: set[str]) -> set[str]:
    """``name`` and every component that needs it, directly or not."""
    specs = {s.name: s for s in SERVICES}
    out = {name}
    changed = True
    while changed:
        changed = False
        for comp in components - out:
            if comp in specs and out & set(specs[comp].needs):
                out.add(comp)
                changed = True
    return out


def start_stack_without_broken(
    components: set[str], log_path: Path, progress: Progress
) -> tuple[Stack, dict[str, str]]:
    """The stack; a service that fails to start is left out with what needs it, and the cause is kept, so one
    broken service does not cancel the measurements of the others."""
    failed: dict[str, str] = {}
    while True:
        try:
            return start_stack(components, log_path), failed
        except RuntimeError as exc:
            name = str(exc).split(" ", 1)[0].rstrip(":")
            if name not in components or name in ("postgres", "pubsub", "firestore"):
                raise
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            cause = " | ".join([lines[0], "...", *lines[-3:]] if len(lines) > 4 else lines)[:600]
            for comp in dependents(name, components):
                failed[comp] = cause if comp == name else f"needs {name}, which failed to start"
            components = components - set(failed)
            progress.step(
                f"setup: {name} failed to start; retrying the stack without {', '.join(sorted(failed))} ({cause[:200]})"
            )


def seed_warm_database(prepared_data_dir: Path) -> None:
    """Give the warm stack a copy of an initialised, migrated and stopped data directory (scenario 2 makes
    one first): it then skips initdb and its migrations are no-ops, about 10 s less on a loaded machine.
    ``cp -a`` keeps the owner, which PostgreSQL checks when it runs as its own user under root."""
    target = local_dir() / "postgres" / "data"
    if target.exists() or not (prepared_data_dir / "PG_VERSION").exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(prepared_data_dir), str(target)], check=True, capture_output=True)


def stop_stack(stack: Stack) -> None:
    """SIGTERM every service at once (each drains for a while: one after another took 17 s), then the
    stack's own orderly stop waits for them and stops the emulators and the database."""
    for name, proc in stack.procs.items():
        if name not in INFRA:
            proc.signal(signal.SIGTERM)
    stack.down()
    if stack.sink is not None:
        stack.sink.close()


async def prime(ctx: RunContext, target: Target) -> str | None:
    """Start one instance and send the mix once; the cause when that fails, else None."""
    epoch = time.monotonic()
    inst = Instance(target, 0, ctx.env, epoch, ctx.log_file(f"prime-{target.name}"))
    inst.spawn()
    try:
        if not await inst.wait_port(60):
            return inst.record.error
        if target.kind == "ws":
            return None
        async with new_client(4) as client:
            for spec in target.mix(ctx.mix):
                sample = await call(
                    client,
                    inst.url,
                    spec,
                    target=target.name,
                    instance=0,
                    epoch=epoch,
                    give_up_at=time.monotonic() + 60,
                )
                if not sample.ok:
                    return f"{spec.name}: {sample.cause}; output tail: {inst.tail()}"
        return None
    finally:
        await stop_all_async([inst])


async def prepare_mix(
    urls: dict[str, str], targets: list[Target], give_up_s: float = 60.0, connect_retry: bool = False
) -> MixContext:
    """A user signed in through auth's dev login and a thread of theirs, when auth and the agent API exist."""
    mix = MixContext(email="loadtest@example.com")
    if AUTH not in targets or "auth" not in urls:
        return mix
    give_up_at = time.monotonic() + give_up_s
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        body = await request_json(
            client,
            "POST",
            f"{urls['auth']}/auth/dev/login",
            json={"email": mix.email},
            give_up_at=give_up_at,
            connect_retry=connect_retry,
        )
        mix.token = str(body["access_token"])
        if AGENT_API in targets and "agent-api" in urls:
            body = await request_json(
                client,
                "POST",
                f"{urls['agent-api']}/api/threads",
                json={"title": "load test"},
                headers=mix.bearer(),
                give_up_at=give_up_at,
                connect_retry=connect_retry,
            )
            mix.thread_id = str(body["id"])
    return mix


async def prime_all(ctx: RunContext, targets: list[Target]) -> list[Target]:
    """The targets that started and answered; the others go to ctx.unavailable with their cause."""
    if not ctx.sizes.prime:
        return list(targets)

    async def one(target: Target) -> str | None:
        started = time.monotonic()
        cause = await prime(ctx, target)
        if cause:
            ctx.unavailable[target.name] = f"failed its first start: {cause}"
            ctx.progress.step(f"setup: {target.name} failed its first start; not measured ({cause[:200]})")
        else:
            ctx.progress.step(f"setup: {target.name} started and answered ({time.monotonic() - started:.1f}s)")
        return cause

    # All at once: nothing is measured here, and one after another cost 25 s of the 10 minutes.
    causes = await asyncio.gather(*(one(t) for t in targets))
    return [t for t, cause in zip(targets, causes, strict=True) if cause is None]
