"""The whole platform on one machine: PostgreSQL, the Pub/Sub and Firestore emulators, every service.

Components start in dependency order, each health-gated; every one gets a free port and a discovery
file. Stopping (Ctrl-C, SIGTERM) ends every process group and removes the discovery files.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO

from emulators.implementation import OFFICIAL, Choice, choose
from emulators.postgres import DATABASE, EmbeddedPostgres, free_port
from emulators.process import ManagedProcess, functions_framework_argv
from shared import discovery
from shared.config import REPO_ROOT
from shared.pubsub_topology import subscription_path, topic_path, topology

PROJECT = "netra-local"


def local_dir() -> Path:
    return Path(os.environ.get("NETRA_LOCAL_DIR", REPO_ROOT / ".local"))


@dataclass
class ServiceSpec:
    name: str
    argv: Callable[[int], list[str]]
    needs: tuple[str, ...]
    health_path: str | None = "/health/ready"  # None: the port accepting connections is enough
    env: dict[str, str] = field(default_factory=dict)


def _ff(source: str, target: str, signature: str = "http") -> Callable[[int], list[str]]:
    return lambda port: functions_framework_argv(REPO_ROOT / source, target, port, signature)


SERVICES: list[ServiceSpec] = [
    ServiceSpec("auth", _ff("functions/auth/main.py", "auth"), ("postgres", "firestore")),
    ServiceSpec(
        "agent-worker",
        _ff("functions/agent/main.py", "agent_worker", "cloudevent"),
        ("postgres", "pubsub", "firestore", "auth"),
        health_path=None,
    ),
    ServiceSpec("agent-api", _ff("functions/agent/main.py", "agent_api"), ("postgres", "pubsub", "firestore", "auth")),
    ServiceSpec(
        "ws-bridge",
        lambda port: [sys.executable, "-m", "functions.ws_bridge", "--port", str(port)],
        ("pubsub", "firestore", "auth", "agent-api"),
    ),
]
INFRA = ("postgres", "pubsub", "firestore")
ALL_NAMES = (*INFRA, *(s.name for s in SERVICES))


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


EMULATOR_NAMES = {
    "pubsub": {OFFICIAL: "Google's Pub/Sub emulator", "own": "own Pub/Sub emulator"},
    "firestore": {OFFICIAL: "Google's Firestore emulator", "own": "own (npm) Firestore emulator"},
}


class Stack:
    def __init__(
        self,
        only: set[str] | None = None,
        sink: IO[str] | None = sys.stdout,
        env_overrides: dict[str, str] | None = None,
    ) -> None:
        self.only = only
        self.sink = sink
        self.procs: dict[str, ManagedProcess] = {}
        self.urls: dict[str, str] = {}
        self.postgres: EmbeddedPostgres | None = None
        self.database_url = os.environ.get("DATABASE_URL")
        self.env_overrides = env_overrides or {}
        self.env: dict[str, str] = {}
        self.emulators: Choice = choose()

    def wanted(self, name: str) -> bool:
        return self.only is None or name in self.only

    def say(self, message: str) -> None:
        if self.sink is not None:
            self.sink.write(f"{'stack':>12} | {message}\n")
            self.sink.flush()

    # -- infrastructure ---------------------------------------------------------------------------
    def start_postgres(self) -> None:
        if self.database_url:
            self.say("postgres: using DATABASE_URL from the environment")
        else:
            state_file = local_dir() / "postgres" / "port"
            port = int(state_file.read_text()) if state_file.exists() else None
            if port is not None and _port_open("127.0.0.1", port):
                port = None  # taken by something else now
            self.postgres = EmbeddedPostgres(local_dir() / "postgres", port=port).start()
            # Local state starts empty on every `up`: the emulators keep nothing between runs, so a database kept
            # from the last run would hold threads and runs whose events and tickets are gone. The server's data
            # directory stays (no initdb each time); the database is dropped and the migrations re-create it.
            self.postgres.drop_database(DATABASE)
            state_file.write_text(str(self.postgres.port))
            self.database_url = self.postgres.url
            discovery.write_entry(
                "postgres",
                "127.0.0.1",
                self.postgres.port,
                self.postgres.process.pid if self.postgres.process else None,
                scheme="postgresql",
            )
            self.say(
                f"postgres: embedded server on 127.0.0.1:{self.postgres.port} ({self.postgres.base}); "
                f"database {DATABASE} emptied, as the emulators start empty"
            )
        result = subprocess.run(
            [sys.executable, "-m", "shared.db.migrate"],
            cwd=REPO_ROOT,
            env={**os.environ, "DATABASE_URL": self.database_url, "NETRA_ENV": "development"},
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"migrations failed:\n{result.stdout}\n{result.stderr}")
        self.say(f"postgres: {result.stdout.strip()}")

    def _start_emulator(self, name: str, module: str, color: int) -> int:
        argv = [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", "0", "--kind", self.emulators.kind]
        proc = ManagedProcess(name, argv, sink=self.sink, color=color).start()
        self.procs[name] = proc
        port: dict[str, int] = {}

        def ready() -> bool:
            for line in proc.lines:
                if line.startswith("{") and '"ready"' in line:
                    port["p"] = int(json.loads(line)["port"])
                    return True
            return False

        proc.wait_for(ready, 120, "ready line")
        discovery.write_entry(name, "127.0.0.1", port["p"], proc.pid)
        self.urls[name] = f"127.0.0.1:{port['p']}"
        return port["p"]

    def create_topology(self, worker_url: str | None) -> None:
        os.environ["PUBSUB_EMULATOR_HOST"] = self.urls["pubsub"]
        from google.api_core.exceptions import AlreadyExists
        from google.cloud import pubsub_v1

        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        spec = topology()
        for topic in spec["topics"]:
            try:
                publisher.create_topic(name=topic_path(PROJECT, topic))
            except AlreadyExists:
                pass
        for name, sub in spec["subscriptions"].items():
            request: dict[str, object] = {
                "name": subscription_path(PROJECT, name),
                "topic": topic_path(PROJECT, sub["topic"]),
                "ack_deadline_seconds": sub.get("ack_deadline_seconds", 60),
                "enable_message_ordering": sub.get("enable_message_ordering", False),
            }
            if sub.get("push_to"):
                if worker_url is None:
                    continue
                request["push_config"] = {"push_endpoint": worker_url + "/"}
            if sub.get("retry_policy"):  # as in the cloud: without it a refused push is retried in 100 ms
                policy = sub["retry_policy"]
                request["retry_policy"] = {
                    "minimum_backoff": timedelta(seconds=policy["minimum_backoff_seconds"]),
                    "maximum_backoff": timedelta(seconds=policy["maximum_backoff_seconds"]),
                }
            dead_letter = spec["topics"][sub["topic"]].get("dead_letter_topic")
            if dead_letter and sub.get("max_delivery_attempts"):
                request["dead_letter_policy"] = {
                    "dead_letter_topic": topic_path(PROJECT, dead_letter),
                    "max_delivery_attempts": sub["max_delivery_attempts"],
                }
            try:
                subscriber.create_subscription(request=request)
            except AlreadyExists:
                pass
        self.say(f"pubsub: topics {', '.join(spec['topics'])} and subscriptions {', '.join(spec['subscriptions'])}")

    # -- services ---------------------------------------------------------------------------------
    def service_env(self) -> dict[str, str]:
        env = {
            "NETRA_ENV": "development",
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "NETRA_DISCOVERY_DIR": str(discovery.discovery_dir()),
            "NETRA_LOCAL_DIR": str(local_dir()),
            "DEV_LOGIN_ENABLED": "true",
            "THREADS": "32",
            "LOG_FORMAT": "text",
        }
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        if "pubsub" in self.urls:
            env["PUBSUB_EMULATOR_HOST"] = self.urls["pubsub"]
        if "firestore" in self.urls:
            env["FIRESTORE_EMULATOR_HOST"] = self.urls["firestore"]
        env.update(self.env_overrides)
        return env

    def start_service(self, spec: ServiceSpec, port: int, color: int) -> None:
        env = {**self.service_env(), **spec.env, "PORT": str(port)}
        proc = ManagedProcess(
            spec.name,
            spec.argv(port),
            env=env,
            sink=self.sink,
            color=color,
            log_file=local_dir() / "logs" / f"{spec.name}.log",
        ).start()
        self.procs[spec.name] = proc
        self.urls[spec.name] = f"http://127.0.0.1:{port}"

    def wait_service(self, spec: ServiceSpec, timeout_s: float = 120) -> None:
        proc = self.procs[spec.name]
        url = self.urls[spec.name]
        port = int(url.rsplit(":", 1)[1])
        if spec.health_path is None:
            proc.wait_for(lambda: _port_open("127.0.0.1", port), timeout_s, "port open")
        else:
            proc.wait_http(url + spec.health_path, timeout_s)
        discovery.write_entry(spec.name, "127.0.0.1", port, proc.pid)

    def up(self) -> None:
        local_dir().mkdir(parents=True, exist_ok=True)
        (local_dir() / "logs").mkdir(exist_ok=True)
        started = time.monotonic()
        if self.wanted("pubsub") or self.wanted("firestore"):
            self.say(f"emulators: {self.emulators.describe()}")
        if self.wanted("pubsub"):
            self._start_emulator("pubsub", "emulators.pubsub", 4)
        if self.wanted("firestore"):
            self._start_emulator("firestore", "emulators.firestore", 5)
        if self.wanted("postgres"):
            self.start_postgres()
        specs = [s for s in SERVICES if self.wanted(s.name)]
        ports = {s.name: free_port() for s in specs}
        if "pubsub" in self.urls:
            worker = f"http://127.0.0.1:{ports['agent-worker']}" if "agent-worker" in ports else None
            self.create_topology(worker)
        # Services start in waves: everything whose needs are met starts together.
        pending = list(specs)
        ready = set(INFRA) | (set(ALL_NAMES) - {s.name for s in specs})
        while pending:
            wave = [s for s in pending if all(n in ready for n in s.needs)]
            if not wave:
                raise RuntimeError(f"cannot order services: {[s.name for s in pending]}")
            for i, spec in enumerate(wave):
                self.start_service(spec, ports[spec.name], i)
            for spec in wave:
                self.wait_service(spec)
                ready.add(spec.name)
                pending.remove(spec)
        self.say(f"all services ready in {time.monotonic() - started:.1f}s")
        self.print_table()

    def print_table(self) -> None:
        rows = []
        if self.database_url:
            rows.append(
                (
                    "postgres",
                    self.postgres.url.split("@")[1] if self.postgres else "DATABASE_URL",
                    str(self.postgres.process.pid if self.postgres and self.postgres.process else "-"),
                    "embedded PostgreSQL" if self.postgres else "DATABASE_URL",
                )
            )
        for name, proc in self.procs.items():
            what = EMULATOR_NAMES[name][self.emulators.kind] if name in EMULATOR_NAMES else "service"
            rows.append((name, self.urls.get(name, "?"), str(proc.pid), what))
        width = max(len(r[1]) for r in rows) if rows else 10
        self.say(f"{'component':<14}{'address':<{width + 2}}{'pid':<9}implementation")
        for name, url, pid, what in rows:
            self.say(f"{name:<14}{url:<{width + 2}}{pid:<9}{what}")
        if "ws-bridge" in self.urls:
            self.say(f"open {self.urls['ws-bridge']}/ in a browser for the chat page")

    def down(self) -> None:
        for name in reversed(list(self.procs)):
            self.procs[name].stop()
            discovery.remove_entry(name)
        if self.postgres is not None:
            self.postgres.stop()
            discovery.remove_entry("postgres")
        self.say("stopped; no process left behind")


def status() -> int:
    """Read the discovery files and check each component's health. Exit 0 only if all are healthy."""
    import httpx

    code = 0
    directory = discovery.discovery_dir()
    entries = sorted(directory.glob("*.json")) if directory.exists() else []
    if not entries:
        print(f"no discovery files in {directory}: is `python -m emulators up` running?")
        return 1
    for path in entries:
        entry = json.loads(path.read_text())
        name, host, port = entry["name"], entry["host"], int(entry["port"])
        if entry["url"].startswith("http") and name not in ("pubsub", "firestore", "agent-worker"):
            try:
                response = httpx.get(entry["url"] + "/health/ready", timeout=3)
                healthy, detail = response.status_code == 200, response.json().get("status", response.status_code)
            except Exception as exc:
                healthy, detail = False, type(exc).__name__
        else:
            healthy = _port_open(host, port)
            detail = "accepting connections" if healthy else "not reachable"
        code |= 0 if healthy else 1
        print(f"{'OK ' if healthy else 'BAD'} {name:<14}{entry['url']:<32} pid {entry.get('pid')}  {detail}")
    return code
