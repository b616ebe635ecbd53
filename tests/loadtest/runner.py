"""Runs the chosen scenarios in an isolated local environment and writes results.json, summary.md and charts."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.config import REPO_ROOT
from tests.loadtest import setup
from tests.loadtest.context import RunContext
from tests.loadtest.model import ScenarioResult
from tests.loadtest.targets import HTTP_TARGETS, WS_TARGETS, Target

TITLES = {1: "Scale from zero", 2: "Cold stack", 3: "WebSocket storm", 4: "Steady load after warm-up", 5: "Remote mode"}
STACK_SCENARIOS = {1, 3, 4}


def isolate_environment(base: Path) -> None:
    """Our own discovery and state directories: a developer's `make run` and ours never see each other."""
    for name in ("DATABASE_URL", "PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "AUTH_JWKS_URL"):
        os.environ.pop(name, None)
    os.environ["NETRA_LOCAL_DIR"] = str(base / "local")
    os.environ["NETRA_DISCOVERY_DIR"] = str(base / "discovery")
    os.environ["NETRA_DOTENV"] = "/nonexistent/.env"
    os.environ.setdefault("NETRA_ENV", "development")


def available(targets: list[Target], only: set[str] | None, ctx: RunContext) -> list[Target]:
    chosen = []
    for target in targets:
        if only is not None and target.name not in only and not target.floor_of:
            ctx.unavailable[target.name] = "not selected (--targets)"
            continue
        reason = target.unavailable()
        if reason:
            ctx.unavailable[target.name] = reason
        else:
            chosen.append(target)
    return chosen


def without_broken(targets: list[Target], broken: dict[str, str], ctx: RunContext) -> list[Target]:
    """Targets whose stack service, or a dependency of it, failed to start are not measured."""
    kept = []
    for target in targets:
        cause = broken.get(target.name) or next(
            (f"needs {n}, which failed to start: {broken[n]}" for n in target.needs if n in broken), None
        )
        if cause:
            ctx.unavailable[target.name] = cause
        else:
            kept.append(target)
    return kept


async def guarded(number: int, body: Callable[[], Awaitable[ScenarioResult]], ctx: RunContext) -> ScenarioResult:
    """One scenario; a crash becomes an "error" result with its cause, and the other scenarios still run."""
    started = time.monotonic()
    ctx.progress.step(f"scenario {number}: {TITLES[number]}")
    try:
        result = await body()
    except Exception as exc:
        result = ScenarioResult(number, TITLES[number], status="error", reason=f"{type(exc).__name__}: {exc}")
        result.notes.append(traceback.format_exc()[-3000:])
    result.duration_s = round(time.monotonic() - started, 1)
    ctx.progress.step(
        f"scenario {number}: {result.status}{': ' + result.reason if result.reason else ''} ({result.duration_s:.0f}s)"
    )
    return result


def not_available(number: int, reason: str) -> ScenarioResult:
    return ScenarioResult(number, TITLES[number], status="not available", reason=reason)


async def run_scenarios(ctx: RunContext, scenarios: list[int], only: set[str] | None) -> list[ScenarioResult]:
    from tests.loadtest import cold_stack, quiet, remote, scale, steady, storm

    quiet.configure(ctx.sizes.settle_max_s)
    results: dict[int, ScenarioResult] = {}
    http_targets = available(HTTP_TARGETS, only, ctx)
    ws_targets = available(WS_TARGETS, only, ctx)
    if 2 in scenarios:
        results[2] = await guarded(2, lambda: cold_stack.run(ctx, http_targets, ws_targets), ctx)
    stand_in = 5 in scenarios and not remote.deployed_urls(ctx)  # the warm stack stands in for a deployment
    if STACK_SCENARIOS & set(scenarios) or stand_in:
        components = setup.stack_components([*http_targets, *ws_targets])
        ctx.progress.step(f"setup: local stack with {', '.join(sorted(components)) or 'nothing'}")
        stack, broken = await asyncio.to_thread(
            setup.start_stack_without_broken, components, ctx.log_file("stack"), ctx.progress
        )
        http_targets = without_broken(http_targets, broken, ctx)
        ws_targets = without_broken(ws_targets, broken, ctx)
        try:
            ctx.env = stack.service_env()
            ctx.stack_urls = dict(stack.urls)
            ctx.mix = await setup.prepare_mix(ctx.stack_urls, http_targets)
            primed = await setup.prime_all(ctx, [*http_targets, *ws_targets])
            ctx.http_targets = [t for t in http_targets if t in primed]
            ctx.ws_targets = [t for t in ws_targets if t in primed]
            for number, module in ((1, scale), (3, storm), (4, steady), (5, remote)):
                if number in scenarios and (number != 5 or stand_in):
                    results[number] = await guarded(number, lambda m=module: m.run(ctx), ctx)
        finally:
            await asyncio.to_thread(setup.stop_stack, stack)
    if 5 in scenarios and not stand_in:
        results[5] = await guarded(5, lambda: remote.run(ctx), ctx)
    return [results[n] for n in sorted(results)]


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        return rev + ("+changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "memory_gb": _memory_gb(),
    }


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _memory_gb() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        return None


def run(ctx: RunContext, scenarios: list[int], only: set[str] | None, keep_tmp: bool = False) -> dict[str, Any]:
    from tests.loadtest import charts, report

    ctx.out.mkdir(parents=True, exist_ok=True)
    for stale in ("logs", "charts"):  # a reused --out must not mix two runs
        shutil.rmtree(ctx.out / stale, ignore_errors=True)
    # Watcher threads time ports and first answers while the main loop fires bursts: let them take the GIL
    # within 1 ms instead of 5.
    sys.setswitchinterval(0.001)
    base = Path(tempfile.mkdtemp(prefix="netra-loadtest-"))
    isolate_environment(base)
    started = time.monotonic()
    load_before = _load_average()
    try:
        results = asyncio.run(run_scenarios(ctx, scenarios, only))
    finally:
        if not keep_tmp:
            shutil.rmtree(base, ignore_errors=True)
    document = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m tests.loadtest", *sys.argv[1:]]),
        "git": git_revision(),
        "machine": machine(),
        "sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(ctx.sizes).items()},
        "duration_s": round(time.monotonic() - started, 1),
        # Other people's work on a shared machine shows here: the figures carry it, the ratios less so.
        "load_average": {"start": load_before, "end": _load_average()},
        "stack_env": dict(setup.STACK_ENV),
        "unavailable": ctx.unavailable,
        "scenarios": [r.to_json() for r in results],
    }
    ctx.progress.step("writing charts and the summary")
    document["charts"] = charts.draw_all(document, ctx.out / "charts")
    (ctx.out / "results.json").write_text(json.dumps(document, indent=1, default=str))
    # The figures without the raw records (a few MB): small enough to keep in the repository.
    figures = {**document, "scenarios": [{k: v for k, v in s.items() if k != "raw"} for s in document["scenarios"]]}
    (ctx.out / "figures.json").write_text(json.dumps(figures, indent=1, default=str))
    (ctx.out / "summary.md").write_text(report.markdown(document))
    return document
