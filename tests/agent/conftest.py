"""Fixtures of the agent tests: the session's Pub/Sub emulator (not parametrized), a stack per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from emulators.process import ManagedProcess
from shared.models.events import AgentRequest
from tests.agent.harness import AgentStack
from tests.fixtures.auth import AuthService, start_auth


@pytest.fixture(scope="session")
def agent_pubsub_host(pubsub_host: str) -> str:
    return pubsub_host  # the session's emulator; each stack has a project of its own


@pytest.fixture
def stack(
    migrated_db_url: str, agent_pubsub_host: str, firestore_emulator_host: str, tmp_path: Path
) -> Iterator[AgentStack]:
    """Topics and subscriptions created; start the worker / API with ``stack.start_worker(**env)``."""
    agent_stack = AgentStack(
        db_url=migrated_db_url, pubsub_host=agent_pubsub_host, firestore_host=firestore_emulator_host, workdir=tmp_path
    )
    agent_stack.create_topology()
    yield agent_stack
    agent_stack.stop()


class Sql:
    """Direct SQL on the stack's database (seeding and assertions)."""

    def __init__(self, url: str) -> None:
        import pg8000.dbapi

        p = urlparse(url)
        self.conn = pg8000.dbapi.connect(
            user=p.username, password=p.password, host=p.hostname, port=p.port, database=p.path.lstrip("/")
        )
        self.conn.autocommit = True

    def all(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        cur = self.conn.cursor()
        cur.execute(sql, params)
        if cur.description is None:
            return []
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any]:
        rows = self.all(sql, params)
        assert rows, f"no row for {sql}"
        return rows[0]

    def user(self, email: str | None = None) -> str:
        return self.one(
            "INSERT INTO users (email) VALUES (%s) RETURNING id::text",
            (email or f"{uuid.uuid4().hex[:8]}@example.com",),
        )["id"]

    def seed_run(self, content: str = "How do I cut my GPT-4o bill?", user_id: str | None = None) -> AgentRequest:
        """A queued run as the API would have stored it."""
        user_id = user_id or self.user()
        thread = self.one("INSERT INTO threads (user_id) VALUES (%s) RETURNING id::text", (user_id,))["id"]
        message = self.one(
            "INSERT INTO messages (thread_id, user_id, role, content) VALUES (%s, %s, 'user', %s) RETURNING id::text",
            (thread, user_id, content),
        )["id"]
        run = self.one(
            "INSERT INTO runs (thread_id, user_id, message_id) VALUES (%s, %s, %s) RETURNING id::text",
            (thread, user_id, message),
        )["id"]
        return AgentRequest(run_id=run, thread_id=thread, user_id=user_id, message_id=message)

    def run(self, run_id: str) -> dict[str, Any]:
        return self.one("SELECT * FROM runs WHERE id = %s", (run_id,))

    def answers(self, run_id: str) -> list[dict[str, Any]]:
        return self.all("SELECT * FROM messages WHERE run_id = %s AND role = 'assistant'", (run_id,))

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def sql(migrated_db_url: str) -> Iterator[Sql]:
    db = Sql(migrated_db_url)
    yield db
    db.close()


def worker_log(proc: ManagedProcess | None) -> str:
    return proc.output()[-4000:] if proc else ""


@pytest.fixture(scope="module")
def module_db_url(pg_server: Any) -> str:
    """A migrated database for one test module (tests keep apart by using users of their own)."""
    from shared.db.connect import Connector
    from shared.db.migrate import MigrateSettings, migrate

    url = pg_server.url_for(f"agent_{uuid.uuid4().hex[:10]}")
    connector = Connector(MigrateSettings.model_validate({"database_url": url}))
    migrate(connector)
    connector.close()
    return url


class ApiEnv:
    """auth + agent worker + agent API on one database and the session's emulators."""

    def __init__(self, stack: AgentStack, auth: AuthService) -> None:
        self.stack = stack
        self.auth = auth

    def login(self, email: str | None = None) -> str:
        return str(self.auth.login(email or f"u{uuid.uuid4().hex[:8]}@example.com")["access_token"])

    def user_id(self, token: str) -> str:
        import jwt

        return str(jwt.decode(token, options={"verify_signature": False})["sub"])


def start_api_env(
    db_url: str,
    pubsub_host: str,
    firestore_host: str,
    workdir: Path,
    worker_env: dict[str, str],
    api_env: dict[str, str] | None = None,
    start_api: bool = True,
) -> ApiEnv:
    auth = start_auth(db_url, workdir / "auth", firestore_host=firestore_host)
    stack = AgentStack(
        db_url=db_url,
        pubsub_host=pubsub_host,
        firestore_host=firestore_host,
        workdir=workdir,
        jwks_url=auth.jwks_url,
        issuer=auth.issuer,
    )
    stack.create_topology()
    stack.start_worker(**worker_env)
    if start_api:
        stack.start_api(**(api_env or {}))
    return ApiEnv(stack, auth)


def stop_api_env(env: ApiEnv) -> None:
    env.stack.stop()
    env.auth.process.kill()  # see AgentStack.stop: nothing to shut down gracefully in a test
    env.auth.process.stop()


@pytest.fixture(scope="module")
def api(
    module_db_url: str, agent_pubsub_host: str, firestore_emulator_host: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiEnv]:
    """The module's stack: runs take about a second (mock tokens streamed 10 ms apart)."""
    env = start_api_env(
        module_db_url,
        agent_pubsub_host,
        firestore_emulator_host,
        tmp_path_factory.mktemp("agent-api"),
        {"MOCK_LLM_TOKEN_DELAY_MS": "10"},
    )
    yield env
    stop_api_env(env)


@pytest.fixture
def env_factory(
    migrated_db_url: str, agent_pubsub_host: str, firestore_emulator_host: str, tmp_path: Path
) -> Iterator[Any]:
    started: list[ApiEnv] = []

    def make(
        worker_env: dict[str, str] | None = None,
        api_env: dict[str, str] | None = None,
        start_api: bool = True,
        push: bool = True,
    ) -> ApiEnv:
        env = start_api_env(
            migrated_db_url,
            agent_pubsub_host,
            firestore_emulator_host,
            tmp_path,
            worker_env or {},
            api_env,
            start_api=start_api,
        )
        if not push:
            env.stack.subscriber().delete_subscription(
                request={"subscription": f"projects/{env.stack.project}/subscriptions/agent-worker"}
            )
        started.append(env)
        return env

    yield make
    for env in started:
        stop_api_env(env)
