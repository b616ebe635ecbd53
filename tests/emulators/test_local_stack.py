"""`python -m emulators up` brings the whole system up, `status` sees it healthy, Ctrl-C leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from shared.config import REPO_ROOT
from shared.pubsub_topology import subscription_path, topology
from tests.fixtures.plans import GENEROUS_PLAN_ENV


def test_scenario_11_whole_stack_up_status_and_clean_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenario 11: many services start in parallel on dynamic ports with discovery files; a chat turn works
    end to end; Ctrl-C stops everything and no recorded process survives."""
    env = {**os.environ, "NETRA_LOCAL_DIR": str(tmp_path / "local"), "NETRA_DISCOVERY_DIR": str(tmp_path / "disc")}
    env.update(GENEROUS_PLAN_ENV)  # the burst below is about the worker's retry policy, not the free plan's limits
    env.pop("DATABASE_URL", None)
    env.pop("PUBSUB_EMULATOR_HOST", None)
    env.pop("FIRESTORE_EMULATOR_HOST", None)
    up = subprocess.Popen(
        [sys.executable, "-m", "emulators", "up"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 180
    assert up.stdout is not None
    while time.monotonic() < deadline:
        line = up.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "all services ready" in line:
            break
    output = "".join(lines)
    try:
        assert "all services ready" in output, output[-4000:]
        entries = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "disc").glob("*.json")}
        assert set(entries) == {"postgres", "pubsub", "firestore", "auth", "agent-api", "agent-worker", "ws-bridge"}
        assert len({e["port"] for e in entries.values()}) == len(entries), "every component has its own port"
        status = subprocess.run(
            [sys.executable, "-m", "emulators", "status"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stdout

        # The worker's push subscription carries the topology's retry policy, as Terraform sets it in the cloud.
        worker_sub = pubsub_subscription(f"127.0.0.1:{entries['pubsub']['port']}", "agent-worker", monkeypatch)
        policy = topology()["subscriptions"]["agent-worker"]["retry_policy"]
        assert worker_sub.retry_policy.minimum_backoff.total_seconds() == policy["minimum_backoff_seconds"]
        assert worker_sub.retry_policy.maximum_backoff.total_seconds() == policy["maximum_backoff_seconds"]
        assert worker_sub.dead_letter_policy.max_delivery_attempts == 5

        # One chat turn through the real services.
        auth, api = entries["auth"]["url"], entries["agent-api"]["url"]
        token = httpx.post(f"{auth}/auth/dev/login", json={}, timeout=30).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        run = httpx.post(f"{api}/api/agent/message", json={"content": "hello"}, headers=headers, timeout=30).json()
        deadline = time.monotonic() + 60
        while httpx.get(f"{api}/api/runs/{run['run_id']}", headers=headers).json()["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.2)

        # A burst of three times the worker's run slots (MAX_CONCURRENT_RUNS, 4): the refused pushes (429) are
        # retried with the subscription's backoff, as in the cloud, and every run completes; without the retry
        # policy the emulator redelivers in 100 ms and dead-letters them after 5 refusals.
        with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
            with ThreadPoolExecutor(12) as pool:
                posted = list(
                    pool.map(lambda i: client.post("/api/agent/message", json={"content": f"burst {i}"}), range(12))
                )
            assert [p.status_code for p in posted] == [202] * 12
            pending = {p.json()["run_id"] for p in posted}
            deadline = time.monotonic() + 150
            while pending:
                assert time.monotonic() < deadline, f"runs never executed: {sorted(pending)}"
                pending = {
                    r for r in pending if client.get(f"/api/runs/{r}").json()["status"] not in ("completed", "failed")
                }
                time.sleep(0.5)

        pids = [int(e["pid"]) for e in entries.values()]
        children = [c.pid for c in psutil.Process(up.pid).children(recursive=True)]
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)
    assert up.returncode == 0, "".join(lines[-20:])
    time.sleep(0.5)
    alive = [
        pid
        for pid in set(pids + children)
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert alive == [], f"left behind: {alive}"
    assert not list((tmp_path / "disc").glob("*.json")), "discovery files are removed on stop"


def pubsub_subscription(host: str, name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The subscription as the emulator holds it (the real client reads the variable when it is built)."""
    from google.cloud import pubsub_v1

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", host)
    with pubsub_v1.SubscriberClient() as subscriber:
        return subscriber.get_subscription(subscription=subscription_path("netra-local", name))
