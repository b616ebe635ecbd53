"""Fixtures of the ws_bridge tests: real bridge processes on the local emulators, real auth tokens.

Each test gets a Google Cloud project id and Firestore collection prefix of its own, so bridges of different
tests never see each other's events. The Pub/Sub emulator is this package's own (embedded, not parametrized).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from emulators.postgres import free_port
from emulators.process import ManagedProcess
from tests.fixtures.auth import AuthService
from tests.ws_bridge.helpers import Bridge, EventSource, make_thread


@pytest.fixture(scope="session")
def ws_pubsub_host(pubsub_host: str) -> str:
    return pubsub_host  # the session's emulator; each test has a project of its own


@dataclass
class WsEnv:
    env: dict[str, str]
    auth: AuthService
    db_url: str
    source: EventSource
    project: str

    def user(self, name: str = "u") -> tuple[str, str]:
        """(access token, user id) of a fresh user signed in through the real auth service."""
        body = self.auth.login(f"{name}-{uuid.uuid4().hex[:8]}@example.com")
        return body["access_token"], body["user"]["id"]

    def thread(self, user_id: str) -> str:
        return make_thread(self.db_url, user_id)

    def short_token(self, user_id: str, ttl_s: int) -> str:
        """A token that expires in ``ttl_s`` seconds, signed with auth's own local keys (auth's minimum
        TTL is a minute, too long for a test)."""
        from shared.tokens.keyset import parse_keyset, sign_access_token

        keyset = parse_keyset((self.auth.local_dir / "auth_keyset.json").read_text())
        token, _ = sign_access_token(
            keyset,
            user_id=user_id,
            email="short@example.com",
            permissions=[],
            issuer=self.auth.issuer,
            audience=self.auth.audience,
            ttl_s=ttl_s,
        )
        return token


@pytest.fixture
def ws_env(
    shared_db_url: str,
    ws_pubsub_host: str,
    firestore_emulator_host: str,
    auth_service_session: AuthService,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[WsEnv]:
    from google.cloud import pubsub_v1

    project = f"ws-{uuid.uuid4().hex[:8]}"
    prefix = f"ws{uuid.uuid4().hex[:8]}_"
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", ws_pubsub_host)
    publisher = pubsub_v1.PublisherClient()
    publisher.create_topic(name=f"projects/{project}/topics/agent-events")
    publisher.stop()
    env = {
        "NETRA_ENV": "test",
        "NETRA_DOTENV": "/nonexistent/.env",
        "LOG_FORMAT": "text",
        "DATABASE_URL": shared_db_url,
        "PUBSUB_EMULATOR_HOST": ws_pubsub_host,
        "FIRESTORE_EMULATOR_HOST": firestore_emulator_host,
        "GOOGLE_CLOUD_PROJECT": project,
        "FIRESTORE_COLLECTION_PREFIX": prefix,
        "AUTH_URL": auth_service_session.url,
        "ALLOWED_ORIGINS": "http://localhost:*",
        **auth_service_session.env,
    }
    source = EventSource(project, prefix)
    yield WsEnv(env, auth_service_session, shared_db_url, source, project)
    source.close()


@pytest.fixture
def start_bridge(ws_env: WsEnv) -> Iterator[Any]:
    procs: list[ManagedProcess] = []

    def start(wrapper: list[str] | None = None, wait: str = "/health/ready", **extra: str) -> Bridge:
        port = free_port()
        argv = [*(wrapper or []), sys.executable, "-m", "functions.ws_bridge", "--port", str(port)]
        proc = ManagedProcess(f"ws-bridge-{len(procs)}", argv, env={**ws_env.env, **extra}).start()
        procs.append(proc)
        if wait:
            proc.wait_http(f"http://127.0.0.1:{port}{wait}", timeout_s=60)
        return Bridge(proc, port)

    yield start
    for proc in procs:
        proc.stop()
        print(proc.output()[-3000:])  # shown by pytest when the test fails


def subscriptions(project: str) -> list[str]:
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    try:
        return [s.name for s in subscriber.list_subscriptions(request={"project": f"projects/{project}"})]
    finally:
        subscriber.close()


def dumps(body: dict[str, Any]) -> str:
    return json.dumps(body)
