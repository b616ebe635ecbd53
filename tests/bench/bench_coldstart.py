"""Every service's cold start beside the empty function, with its phases (`BENCH=coldstart python -m tests.bench`).

One local stack (tests/bench/agent_stack.py: embedded PostgreSQL, the Pub/Sub and Firestore emulators as
NETRA_EMULATORS chooses, auth, the agent API); each round spawns, one after another, the empty
functions-framework function and a fresh process of each service with the stack's own command and environment,
timed from spawn to its first real success (BENCH_COLDSTART_ROUNDS rounds, interleaved, medians;
BENCH_COLDSTART_SERVICES="agent API,ws_bridge" for a subset):

- empty function: GET / 200;
- auth: POST /auth/dev/login 200 with a token;
- agent API: GET /api/threads 200 with a token;
- agent worker (on the push subscription's port, the warm worker stopped): a chat message posted to the warm
  API once the port is open, success when the run is completed (Pub/Sub push delivery executed);
- ws_bridge: the first frame (connection_established) on /ws with the subprotocol token.

For each: spawn -> port open, port open -> first success, when each start-up component was up (ms after spawn,
from the service's own "component up" log lines: the first round trip to each dependency, client import and
channel included), and, from one extra spawn with PYTHONPROFILEIMPORTTIME=1 (not in the medians), the import time
until the first success by package. Run it once per emulator implementation: NETRA_EMULATORS=official and own.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

from emulators.implementation import choose
from emulators.postgres import free_port
from emulators.process import functions_framework_argv
from shared.config import REPO_ROOT
from tests.bench.agent_stack import BenchStack, bench_agent_stack
from tests.bench.spawn import (
    EMPTY_FUNCTION,
    ColdStart,
    empty_ok,
    import_self_ms,
    imports_line,
    phases_line,
    spawn_phases,
)

ROUNDS = int(os.environ.get("BENCH_COLDSTART_ROUNDS", "5"))
# A subset, e.g. "agent API,ws_bridge" (the empty function always runs: it is the baseline).
ONLY = {n.strip() for n in os.environ.get("BENCH_COLDSTART_SERVICES", "").split(",") if n.strip()}
AGENT = REPO_ROOT / "functions/agent/main.py"
AUTH = REPO_ROOT / "functions/auth/main.py"
# Each service's library floor: the empty function importing the third-party libraries that its first success
# cannot do without (validation and settings, tokens, the database driver, and the Google clients its first
# success calls), and nothing of the project. What a service takes beyond its floor is the project's own cost.
_BASE = "pydantic,pydantic_settings,jwt,pg8000.dbapi"
FLOORS = {
    "floor: auth libraries": {"BENCH_FLOOR_IMPORTS": f"{_BASE},google.cloud.firestore"},
    "floor: agent API libraries": {"BENCH_FLOOR_IMPORTS": _BASE},
    "floor: worker libraries": {"BENCH_FLOOR_IMPORTS": f"{_BASE},google.cloud.firestore,google.cloud.pubsub_v1"},
}
INFO_LOGS = {"LOG_LEVEL": "INFO", "LOG_FORMAT": "json"}  # "component up" lines carry the start-up timeline


@dataclass
class Service:
    name: str
    argv: Callable[[int], list[str]]
    env: dict[str, str]
    ok: Callable[[str], bool]
    fixed_port: int | None = None
    runs: list[ColdStart] = field(default_factory=list)
    components: dict[str, list[float]] = field(default_factory=dict)

    def spawn(self, log_file: Path, extra: dict[str, str] | None = None, timed: bool = True) -> ColdStart:
        port = self.fixed_port or free_port()
        spawned_at = time.time()
        run = spawn_phases(self.argv(port), {**self.env, **(extra or {})}, port, self.ok, log_file=log_file)
        if timed:
            self.runs.append(run)
            for name, up_s in component_ups(log_file, spawned_at).items():
                self.components.setdefault(name, []).append(up_s)
        return run


def component_ups(log_file: Path, spawned_at: float) -> dict[str, float]:
    """Seconds after the spawn at which each start-up component logged "component up"."""
    ups: dict[str, float] = {}
    for line in log_file.read_text(errors="replace").splitlines():
        if '"component up"' not in line:
            continue
        try:
            record = json.loads(line[line.index("{") :])
        except ValueError:
            continue
        at = datetime.fromisoformat(record["time"]).timestamp()
        ups.setdefault(record.get("component", "?"), at - spawned_at)
    return ups


def components_line(service: Service) -> str:
    if not service.components:
        return f"{service.name}: no start-up component logged up before the first success"
    ordered = sorted(service.components.items(), key=lambda kv: statistics.median(kv[1]))
    cells = ", ".join(f"{name} {statistics.median(v) * 1000:.0f}" for name, v in ordered)
    return f"{service.name}: start-up components up at (ms after spawn, medians): {cells}"


def protocols(token: str) -> list[str]:
    import base64

    return ["jwt-auth", "jwt." + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")]


def first_frame_ok(token: str) -> Callable[[str], bool]:
    async def once(url: str) -> bool:
        import websockets

        ws = await websockets.connect(url, subprotocols=protocols(token), open_timeout=10)
        try:
            return json.loads(await asyncio.wait_for(ws.recv(), 10)).get("type") == "connection_established"
        finally:
            await ws.close()

    def ok(base_url: str) -> bool:
        try:
            return asyncio.run(once(base_url.replace("http://", "ws://") + "/ws"))
        except Exception:  # refused or closed with 1013 while starting: not yet
            return False

    return ok


def services(bench: BenchStack, token: str, thread_id: str) -> list[Service]:
    stack, auth = bench.stack, bench.auth
    headers = {"Authorization": f"Bearer {token}"}

    def login_ok(url: str) -> bool:
        response = httpx.post(url + "/auth/dev/login", json={"email": "cold@example.com"}, timeout=30)
        return response.status_code == 200 and bool(response.json().get("access_token"))

    def threads_ok(url: str) -> bool:
        return httpx.get(url + "/api/threads", headers=headers, timeout=30).status_code == 200

    posted: dict[str, str] = {}

    def run_executed(_url: str) -> bool:
        # Once the port is open: queue one run through the warm API (published to agent-requests, pushed by the
        # emulator to this port); success when the fresh worker has completed it.
        if "run_id" not in posted:
            response = httpx.post(
                stack.api_url + "/api/agent/message",
                json={"content": "cold worker", "thread_id": thread_id},
                headers=headers,
                timeout=30,
            )
            assert response.status_code == 202, response.text
            posted["run_id"] = response.json()["run_id"]
        status = httpx.get(f"{stack.api_url}/api/runs/{posted['run_id']}", headers=headers, timeout=30).json()
        if status.get("status") == "completed":
            posted.clear()
            return True
        return False

    bridge_env = {
        **stack.env(),
        **auth.env,
        "AGENT_API_URL": stack.api_url,
        "AUTH_URL": auth.url,
        "ALLOWED_ORIGINS": "http://localhost:*",
    }
    empty = [
        Service(name, lambda p: functions_framework_argv(EMPTY_FUNCTION, "empty", p), env, empty_ok)
        for name, env in [("empty function", {}), *FLOORS.items()]
    ]
    return [
        *empty,
        Service(
            "auth",
            lambda p: functions_framework_argv(AUTH, "auth", p),
            {**auth.process_env, "FIRESTORE_COLLECTION_PREFIX": auth.firestore_prefix},
            login_ok,
        ),
        Service("agent API", lambda p: functions_framework_argv(AGENT, "agent_api", p), stack.env(), threads_ok),
        Service(
            "agent worker",
            lambda p: functions_framework_argv(AGENT, "agent_worker", p, "cloudevent"),
            stack.env(),
            run_executed,
            fixed_port=stack.worker_port,
        ),
        Service(
            "ws_bridge",
            lambda p: [sys.executable, "-m", "functions.ws_bridge", "--port", str(p)],
            bridge_env,
            first_frame_ok(token),
        ),
    ]


def main() -> None:
    print(f"emulators: {choose().describe()}; load average {Path('/proc/loadavg').read_text().split()[:3]}")
    logs = Path(tempfile.mkdtemp(prefix="bench-coldstart-logs-"))
    try:
        measure(logs)
    finally:
        shutil.rmtree(logs, ignore_errors=True)


def measure(logs: Path) -> None:
    with bench_agent_stack("bench-coldstart") as bench:
        token = bench.token("bench@example.com")
        with bench.stack.client(token) as client:
            thread_id = client.post("/api/threads", json={"title": "cold"}).json()["id"]
        bench.stack.kill_worker()  # fresh workers take the push subscription's port
        chosen = [
            s
            for s in services(bench, token, thread_id)
            if not ONLY or s.name in ONLY | {"empty function"} or any(s.name == f"floor: {o} libraries" for o in ONLY)
        ]
        for i in range(ROUNDS):
            for service in chosen:
                log = logs / f"{service.name.replace(' ', '-')}-{i}.log"
                service.spawn(log, INFO_LOGS)
        profiles = {}
        for service in chosen:
            log = logs / f"{service.name.replace(' ', '-')}-importtime.log"
            service.spawn(log, {**INFO_LOGS, "PYTHONPROFILEIMPORTTIME": "1"}, timed=False)
            profiles[service.name] = import_self_ms(log.read_text(errors="replace"))
        print(f"load average after {ROUNDS} rounds: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
    empty = statistics.median(r.first_success_s for r in chosen[0].runs)
    print("\nspawn -> first success, medians (x empty function, same rounds):")
    for service in chosen:
        total = statistics.median(r.first_success_s for r in service.runs)
        samples = ", ".join(f"{r.first_success_s * 1000:.0f}" for r in service.runs)
        print(f"  {service.name}: {total * 1000:.0f} ms ({samples}), {total / empty:.2f}x (target <= 1.5)")
    print("\nphases:")
    for service in chosen:
        print("  " + phases_line(service.name, service.runs))
        if service.name != "empty function" and not service.name.startswith("floor:"):
            print("  " + components_line(service))
        print("  " + imports_line(service.name, profiles[service.name]), flush=True)


if __name__ == "__main__":
    main()
