"""One agent stack for tests and benchmarks: real Postgres, Pub/Sub and Firestore emulators, the agent worker
(functions-framework, cloudevent, fed by a real push subscription of the emulator) and the agent API.

Each stack has a Google Cloud project id and a Firestore collection prefix of its own, so stacks share the
session's emulators without seeing each other's topics, subscriptions or documents.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from emulators.postgres import free_port
from emulators.process import ManagedProcess, functions_framework_argv
from shared.config import REPO_ROOT
from shared.models.events import AgentEvent, AgentRequest
from shared.pubsub_topology import (
    AGENT_EVENTS,
    AGENT_REQUESTS,
    ROLLUP_SUBSCRIPTION,
    USAGE_ROLLUPS,
    WORKER_SUBSCRIPTION,
    subscription_path,
    topic_path,
)
from tests.fixtures.plans import GENEROUS_PLAN_ENV

SOURCE = REPO_ROOT / "functions/agent/main.py"
TAP = "events-tap"


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)


@dataclass
class AgentStack:
    db_url: str
    pubsub_host: str
    firestore_host: str
    workdir: Path
    jwks_url: str | None = None
    issuer: str | None = None
    project: str = field(default_factory=lambda: f"agt-{uuid.uuid4().hex[:8]}")
    prefix: str = field(default_factory=lambda: f"a{uuid.uuid4().hex[:8]}_")
    worker_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    worker: ManagedProcess | None = None
    api: ManagedProcess | None = None
    tapped: list[AgentEvent] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    _procs: list[ManagedProcess] = field(default_factory=list)

    # -- environment -------------------------------------------------------------------------------------
    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            "NETRA_ENV": "test",
            "NETRA_DOTENV": "/nonexistent/.env",
            "LOG_FORMAT": "text",
            "THREADS": "32",
            "DATABASE_URL": self.db_url,
            "PUBSUB_EMULATOR_HOST": self.pubsub_host,
            "FIRESTORE_EMULATOR_HOST": self.firestore_host,
            "GOOGLE_CLOUD_PROJECT": self.project,
            "FIRESTORE_COLLECTION_PREFIX": self.prefix,
            "NETRA_DISCOVERY_DIR": str(self.workdir / "discovery"),
            "STARTUP_WAIT_SECONDS": "15",
            # The platform's tests assert what the minimal pipeline does; the configured pipeline ("auto") has
            # an end-to-end test of its own.
            "AGENT_PIPELINE": "minimal",
            # Plans are tested by tests/agent/test_plans.py with limits of its own.
            **GENEROUS_PLAN_ENV,
        }
        if self.jwks_url:
            env["AUTH_JWKS_URL"] = self.jwks_url
        if self.issuer:
            env["AUTH_ISSUER"] = self.issuer
        env.update(self.extra_env)
        env.update(overrides)
        return env

    @contextmanager
    def in_process(self) -> Iterator[None]:
        """Point this process's Google clients and collection names at the stack."""
        keys = {
            "GOOGLE_CLOUD_PROJECT": self.project,
            "FIRESTORE_COLLECTION_PREFIX": self.prefix,
            "PUBSUB_EMULATOR_HOST": self.pubsub_host,
            "FIRESTORE_EMULATOR_HOST": self.firestore_host,
        }
        previous = {k: os.environ.get(k) for k in keys}
        os.environ.update(keys)
        from shared import firestore

        client = firestore._client
        if client is not None and client.project != self.project:
            firestore.reset_client()  # the shared client is bound to the project it was created for
        try:
            yield
        finally:
            for k, v in previous.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    # -- Pub/Sub -----------------------------------------------------------------------------------------
    def publisher(self) -> Any:
        from google.cloud import pubsub_v1

        os.environ["PUBSUB_EMULATOR_HOST"] = self.pubsub_host
        if not hasattr(self, "_publisher"):
            self._publisher = pubsub_v1.PublisherClient()
        return self._publisher

    def subscriber(self) -> Any:
        from google.cloud import pubsub_v1

        os.environ["PUBSUB_EMULATOR_HOST"] = self.pubsub_host
        if not hasattr(self, "_subscriber"):
            self._subscriber = pubsub_v1.SubscriberClient()
        return self._subscriber

    def create_topology(self, push: bool = True) -> None:
        publisher, subscriber = self.publisher(), self.subscriber()
        for topic in (AGENT_REQUESTS, AGENT_EVENTS, USAGE_ROLLUPS):
            publisher.create_topic(name=topic_path(self.project, topic))
        if push:
            for name, topic in ((WORKER_SUBSCRIPTION, AGENT_REQUESTS), (ROLLUP_SUBSCRIPTION, USAGE_ROLLUPS)):
                subscriber.create_subscription(
                    request={
                        "name": subscription_path(self.project, name),
                        "topic": topic_path(self.project, topic),
                        "ack_deadline_seconds": 600,
                        "push_config": {"push_endpoint": f"http://127.0.0.1:{self.worker_port}/"},
                    }
                )
        subscriber.create_subscription(
            request={
                "name": subscription_path(self.project, TAP),
                "topic": topic_path(self.project, AGENT_EVENTS),
                "ack_deadline_seconds": 30,
                "enable_message_ordering": True,
            }
        )

    def publish_request(self, request: AgentRequest) -> str:
        future = self.publisher().publish(topic_path(self.project, AGENT_REQUESTS), request.to_bytes())
        return str(future.result(timeout=10))

    def pull_events(self, timeout_s: float = 1.0) -> list[AgentEvent]:
        """Drain what the tap subscription has now (acknowledging it) into ``self.tapped``."""
        from google.api_core import exceptions as gexc

        subscriber = self.subscriber()
        name = subscription_path(self.project, TAP)
        got: list[AgentEvent] = []
        while True:
            try:
                response = subscriber.pull(request={"subscription": name, "max_messages": 500}, timeout=timeout_s)
            except gexc.DeadlineExceeded:
                break
            if not response.received_messages:
                break
            for received in response.received_messages:
                event = AgentEvent.from_bytes(received.message.data)
                event.data["_attributes"] = dict(received.message.attributes)
                event.data["_ordering_key"] = received.message.ordering_key
                got.append(event)
            subscriber.acknowledge(
                request={"subscription": name, "ack_ids": [r.ack_id for r in response.received_messages]}
            )
            timeout_s = 0.2
        self.tapped.extend(got)
        return got

    def tapped_for(self, run_id: str, dedupe: bool = True) -> list[AgentEvent]:
        events = [e for e in self.tapped if e.run_id == run_id]
        if not dedupe:
            return events
        unique: dict[int, AgentEvent] = {}
        for event in events:
            unique.setdefault(event.seq, event)
        return [unique[s] for s in sorted(unique)]

    def wait_tapped_terminal(self, run_id: str, timeout_s: float = 30.0) -> list[AgentEvent]:
        def done() -> bool:
            self.pull_events(0.5)
            return any(e.terminal for e in self.tapped_for(run_id))

        wait_until(done, timeout_s, f"a terminal event of run {run_id} on agent-events", 0.0)
        return self.tapped_for(run_id)

    def wait_seq(self, run_id: str, seq: int, timeout_s: float = 30.0) -> int:
        """Wait until the run's log reaches ``seq``; the worker's log is in the error if it does not."""
        try:
            return wait_until(
                lambda: (self.log_state(run_id) or {}).get("last_seq", 0) >= seq and self.log_state(run_id)["last_seq"],
                timeout_s,
                f"seq {seq} of run {run_id}",
            )
        except AssertionError as exc:
            tail = self.worker.output()[-4000:] if self.worker else ""
            raise AssertionError(f"{exc}; worker log:\n{tail}") from None

    # -- Firestore ---------------------------------------------------------------------------------------
    def log_events(self, run_id: str) -> list[AgentEvent]:
        from functions.agent.eventlog import EventLog

        with self.in_process():
            return EventLog(self.project, 7).events(run_id)

    def log_state(self, run_id: str) -> dict[str, Any] | None:
        from functions.agent.eventlog import EventLog

        with self.in_process():
            return EventLog(self.project, 7).run_state(run_id)

    # -- processes ---------------------------------------------------------------------------------------
    def _start(self, name: str, target: str, signature: str, port: int, env: dict[str, str]) -> ManagedProcess:
        proc = ManagedProcess(name, functions_framework_argv(SOURCE, target, port, signature), env=self.env(**env))
        proc.start()
        self._procs.append(proc)
        return proc

    def start_worker(self, wait: bool = True, **env: str) -> ManagedProcess:
        self.worker = self._start("agent-worker", "agent_worker", "cloudevent", self.worker_port, env)
        if wait:
            import socket

            def listening() -> bool:
                with socket.socket() as sock:
                    return sock.connect_ex(("127.0.0.1", self.worker_port)) == 0

            self.worker.wait_for(listening, 60, "worker port open")
        return self.worker

    def kill_worker(self) -> None:
        assert self.worker is not None
        self.worker.kill()
        self.worker.stop()

    def start_api(self, wait_ready: bool = True, **env: str) -> ManagedProcess:
        self.api = self._start("agent-api", "agent_api", "http", self.api_port, env)
        self.api.wait_http(self.api_url + ("/health/ready" if wait_ready else "/health/live"), timeout_s=60)
        return self.api

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def stop(self) -> None:
        for proc in reversed(self._procs):
            # SIGKILL: a graceful gunicorn stop waits out the emulator's keep-alive push connections (~3 s) and
            # teardown has nothing to save. Graceful stops are not what these tests are about.
            if proc.alive():
                proc.kill()
            proc.stop()
        self._procs.clear()
        for attr in ("_publisher", "_subscriber"):
            client = getattr(self, attr, None)
            if client is not None:
                try:
                    client.stop() if attr == "_publisher" else client.close()
                except Exception:  # noqa: S110 - best effort at teardown
                    pass
                delattr(self, attr)

    # -- the API -----------------------------------------------------------------------------------------
    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.api_url, headers=headers, timeout=30, trust_env=False)

    def wait_run(
        self,
        token: str,
        run_id: str,
        statuses: tuple[str, ...] = ("completed", "failed", "cancelled"),
        timeout_s: float = 60.0,
    ) -> dict[str, Any]:
        with self.client(token) as client:

            def finished() -> dict[str, Any] | None:
                body = client.get(f"/api/runs/{run_id}").json()
                return body if body.get("status") in statuses else None

            return wait_until(finished, timeout_s, f"run {run_id} in {statuses}", 0.1)


def assert_gapless(events: list[AgentEvent]) -> None:
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), f"sequence has gaps or duplicates: {seqs}"
