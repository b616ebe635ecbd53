"""Fixtures of the ingestion tests: the agent API's ingest routes served over real HTTP (a werkzeug server on
127.0.0.1 serving shared.http.Router, as tests/intelligence/test_usage_api.py does) on a real PostgreSQL. The
bearer token of the key-management routes is the user id (a stand-in for the agent API's token check, which
tests/agent/test_ingest_api.py covers on the real agent API process); the ingest routes use real ingest keys.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from flask import Flask, request
from werkzeug.serving import make_server

from functions.agent.ingest import routes
from functions.agent.settings import IngestSection
from shared.config import DatabaseSection
from shared.db.database import Database
from shared.errors import unauthorized
from shared.http import Ctx, Router
from shared.plans import PlansSection
from tests.fixtures.plans import GENEROUS_FREE_PLAN

MAX_BODY = 1_048_576


@pytest.fixture(scope="session")
def ingest_db(shared_db_url: str) -> Iterator[Database]:
    db = Database(DatabaseSection.model_validate({"database_url": shared_db_url, "db_pool_size": 6}), "ingest-tests")
    yield db
    db.close()


class StubDeps:
    def __init__(self, db: Any, settings: Any) -> None:
        self.db = db
        self.settings = settings

    def current_user(self, ctx: Ctx) -> dict[str, Any]:
        if not ctx.bearer or ctx.bearer.startswith("nik_"):
            raise unauthorized()
        return {"id": ctx.bearer, "email": None}


@dataclass
class IngestServer:
    url: str
    db: Database
    settings: Any
    rollup_requests: list[str] = field(default_factory=list)
    statuses: list[tuple[str, int]] = field(default_factory=list)  # (path, status) of every answer

    def user(self) -> str:
        user_id = str(uuid.uuid4())
        self.db.execute("INSERT INTO users (id, email) VALUES (%s, %s)", [user_id, f"{user_id[:8]}@example.com"])
        return user_id

    def client(self, user_id: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {user_id}"}, trust_env=False, timeout=30
        )

    def new_key(self, user_id: str, **extra: Any) -> str:
        with self.client(user_id) as c:
            response = c.post("/api/ingest/keys", json={"name": "test", **extra})
        assert response.status_code == 201, response.text
        return str(response.json()["key"])

    def records(self, user_id: str) -> list[dict[str, Any]]:
        return self.db.all("SELECT * FROM usage_records WHERE user_id = %s ORDER BY ts, request_id", [user_id])


class IngestSettings(IngestSection, PlansSection):
    """What the ingest routes read: their own section and the plans' usage-row limits (docs/AUTH.md, Plans)."""


def serve(db: Database, **settings: Any) -> tuple[IngestServer, Any]:
    # Plan limits are tested in tests/agent/test_plans.py; here the free plan stores without limit.
    config = IngestSettings.model_validate({"plan_free": GENEROUS_FREE_PLAN, **settings})
    router = Router("ingest-test", [], max_body_bytes=MAX_BODY)
    server_info = IngestServer("", db, config)
    routes.register(router, StubDeps(db, config), request_rollup=server_info.rollup_requests.append)
    app = Flask("ingest-test")
    app.add_url_rule("/<path:path>", "all", lambda path: router(request), methods=["GET", "POST", "DELETE"])

    @app.after_request
    def keep_status(response: Any) -> Any:
        server_info.statuses.append((request.path, response.status_code))
        return response

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server_info.url = f"http://127.0.0.1:{server.server_port}"
    return server_info, server


@pytest.fixture(scope="session")
def ingest(ingest_db: Database) -> Iterator[IngestServer]:
    info, server = serve(ingest_db)
    yield info
    server.shutdown()
