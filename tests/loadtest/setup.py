"""Before the scenarios: an isolated local stack, each target started once (checks it, compiles its
bytecode so the first measured spawn is not the only one paying for it), and the mix's token and thread."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from emulators.stack import ALL_NAMES, SERVICES, Stack
from tests.loadtest.client import call, new_client, request_json
from tests.loadtest.context import RunContext
from tests.loadtest.instances import Instance, stop_all_async
from tests.loadtest.targets import AGENT_API, AUTH, WS_BRIDGE, MixContext, Target

INFRA = ("postgres", "pubsub", "firestore")


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
    stack = Stack(only=components, sink=log)
    try:
        stack.up()
    except BaseException:
        stack.down()
        log.close()
        raise
    return stack


def stop_stack(stack: Stack) -> None:
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
                sample = await call(client, inst.url, spec, target=target.name, instance=0, epoch=epoch,
                                    give_up_at=time.monotonic() + 60)
                if not sample.ok:
                    return f"{spec.name}: {sample.cause}; output tail: {inst.tail()}"
        return None
    finally:
        await stop_all_async([inst])


async def prepare_mix(urls: dict[str, str], targets: list[Target], give_up_s: float = 60.0,
                      connect_retry: bool = False) -> MixContext:
    """A user signed in through auth's dev login and a thread of theirs, when auth and the agent API exist."""
    mix = MixContext(email="loadtest@example.com")
    if AUTH not in targets or "auth" not in urls:
        return mix
    give_up_at = time.monotonic() + give_up_s
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        body = await request_json(client, "POST", f"{urls['auth']}/auth/dev/login", json={"email": mix.email},
                                  give_up_at=give_up_at, connect_retry=connect_retry)
        mix.token = str(body["access_token"])
        if AGENT_API in targets and "agent-api" in urls:
            body = await request_json(client, "POST", f"{urls['agent-api']}/api/threads", json={"title": "load test"},
                                      headers=mix.bearer(), give_up_at=give_up_at, connect_retry=connect_retry)
            mix.thread_id = str(body["id"])
    return mix


async def prime_all(ctx: RunContext, targets: list[Target]) -> list[Target]:
    """The targets that started and answered; the others go to ctx.unavailable with their cause."""
    usable = []
    for target in targets:
        started = time.monotonic()
        cause = await prime(ctx, target)
        if cause:
            ctx.unavailable[target.name] = f"failed its first start: {cause}"
            ctx.progress.step(f"setup: {target.name} failed its first start; not measured ({cause[:200]})")
        else:
            usable.append(target)
            ctx.progress.step(f"setup: {target.name} started and answered ({time.monotonic() - started:.1f}s)")
    return usable

