"""The local agent platform a benchmark runs against: embedded PostgreSQL (migrated), the Pub/Sub and Firestore
emulators (as NETRA_EMULATORS chooses), auth for tokens, and the agent worker and API as functions-framework
processes. One place, so every benchmark measures the same stack and stops all of it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from emulators.postgres import EmbeddedPostgres
from emulators.process import ManagedProcess
from tests.agent.harness import AgentStack

if TYPE_CHECKING:
    from tests.fixtures.auth import AuthService


@dataclass
class BenchStack:
    stack: AgentStack
    auth: AuthService
    db_url: str

    def token(self, email: str) -> str:
        return str(self.auth.login(email)["access_token"])


@contextmanager
def bench_agent_stack(name: str, **worker_env: str) -> Iterator[BenchStack]:
    """Start the stack with database ``name``; ``worker_env`` goes to the worker only."""
    from shared.db.connect import Connector
    from shared.db.migrate import MigrateSettings, migrate
    from tests.fixtures.auth import start_auth
    from tests.fixtures.firestore import start_emulator_process as start_firestore
    from tests.fixtures.pubsub import start_emulator_process as start_pubsub

    work = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    pg = EmbeddedPostgres(work / "pg").start()
    procs: list[ManagedProcess] = []
    stack: AgentStack | None = None
    auth = None
    try:
        url = pg.url_for(name.replace("-", "_"))
        connector = Connector(MigrateSettings.model_validate({"database_url": url}))
        migrate(connector)
        connector.close()
        pubsub_proc, pubsub_host = start_pubsub()
        firestore_proc, firestore_host = start_firestore()
        procs += [pubsub_proc, firestore_proc]
        auth = start_auth(url, work / "auth", firestore_host=firestore_host)
        stack = AgentStack(
            db_url=url,
            pubsub_host=pubsub_host,
            firestore_host=firestore_host,
            workdir=work,
            jwks_url=auth.jwks_url,
            issuer=auth.issuer,
            extra_env={"LOG_LEVEL": "WARNING"},
        )
        stack.create_topology()
        stack.start_worker(**worker_env)
        stack.start_api()
        yield BenchStack(stack=stack, auth=auth, db_url=url)
    finally:
        if stack is not None:
            stack.stop()
        if auth is not None:
            auth.process.stop()
        for proc in procs:
            proc.stop()
        pg.destroy()
