"""The local stack (`make run`) on each emulator implementation, measured in the same run.

For Google's emulators (where gcloud with both components and Java is installed) and the project's own:
1. Time to ready: spawn of ``python -m emulators up`` to its "all services ready" line (PostgreSQL, both
   emulators, auth, agent API, agent worker, ws_bridge; the database emptied and migrated as on every run).
2. First agent event: POST /api/agent/message to the run's first event readable through
   GET /api/runs/{id}/events (polled every 20 ms), BENCH_STACK_N runs (default 10) after one warm-up run, with
   the mock provider. The own emulators' figures are the same-run baseline for Google's.

``BENCH=stack python -m tests.bench``. Figures only; the machine's load changes them a lot.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from emulators.implementation import ENV, OFFICIAL, OWN, official_parts
from shared.config import REPO_ROOT

N = int(os.environ.get("BENCH_STACK_N", "10"))


def first_event_ms(api: str, headers: dict[str, str], content: str) -> float:
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        started = time.monotonic()
        run = client.post("/api/agent/message", json={"content": content}).json()
        while True:
            events = client.get(f"/api/runs/{run['run_id']}/events").json().get("events", [])
            if events:
                return (time.monotonic() - started) * 1000
            if time.monotonic() - started > 60:
                raise TimeoutError(f"no event for run {run['run_id']} within 60 s")
            time.sleep(0.02)


def measure(kind: str) -> tuple[float, list[float]]:
    work = Path(tempfile.mkdtemp(prefix=f"bench-stack-{kind}-"))
    env = {**os.environ, ENV: kind, "NETRA_LOCAL_DIR": str(work / "local"), "NETRA_DISCOVERY_DIR": str(work / "disc")}
    for name in ("DATABASE_URL", "PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST"):
        env.pop(name, None)
    started = time.monotonic()
    up = subprocess.Popen(
        [sys.executable, "-m", "emulators", "up"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert up.stdout is not None
        for line in up.stdout:
            if "all services ready" in line:
                break
        else:
            raise RuntimeError(f"the stack exited with {up.wait()} before it was ready")
        ready_s = time.monotonic() - started
        entries = {p.stem: json.loads(p.read_text()) for p in (work / "disc").glob("*.json")}
        auth, api = entries["auth"]["url"], entries["agent-api"]["url"]
        token = httpx.post(f"{auth}/auth/dev/login", json={}, timeout=30).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        first_event_ms(api, headers, "warm-up")
        samples = [first_event_ms(api, headers, f"first event sample {i}") for i in range(N)]
        return ready_s, samples
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)


def main() -> dict[str, dict[str, float]]:
    missing = official_parts()[1]
    kinds = [OWN] if missing else [OFFICIAL, OWN]
    if missing:
        print(f"Google's emulators not measured: {missing}", flush=True)
    print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
    figures: dict[str, dict[str, float]] = {}
    for kind in kinds:
        ready_s, samples = measure(kind)
        figures[kind] = {
            "ready_s": ready_s,
            "first_event_p50_ms": statistics.median(samples),
            "first_event_max_ms": max(samples),
        }
        print(
            f"{kind:>8} emulators: make run ready in {ready_s:.1f} s; POST -> first event p50 "
            f"{statistics.median(samples):.0f} ms, max {max(samples):.0f} ms (n={len(samples)})",
            flush=True,
        )
    print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
    return figures


if __name__ == "__main__":
    main()
