"""The optimization pipeline in the real platform: auth, the agent API and the agent worker as processes, the
Pub/Sub and Firestore emulators, PostgreSQL. A user signs in, uploads usage through the API, asks, and gets the
priced report from the worker; after deleting the data, the same question gets the data helper."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from functions.agent.usage.generate import generate


@pytest.fixture(scope="module")
def platform(
    pg_server: Any, firestore_emulator_host: str, pubsub_host: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    from shared.db.connect import Connector
    from shared.db.migrate import MigrateSettings, migrate
    from tests.agent.conftest import start_api_env, stop_api_env

    url = pg_server.url_for(f"intel_{uuid.uuid4().hex[:10]}")
    connector = Connector(MigrateSettings.model_validate({"database_url": url}))
    migrate(connector)
    connector.close()
    env = None
    try:
        env = start_api_env(
            url,
            pubsub_host,
            firestore_emulator_host,
            Path(tmp_path_factory.mktemp("intel-e2e")),
            worker_env={"AGENT_PIPELINE": "auto"},
        )
        yield env
    finally:
        if env is not None:
            stop_api_env(env)


def ask(env: Any, token: str, content: str) -> tuple[dict[str, Any], str]:
    with env.stack.client(token) as client:
        posted = client.post("/api/agent/message", json={"content": content})
        assert posted.status_code in (200, 201, 202), posted.text
        body = posted.json()
        run = env.stack.wait_run(token, body["run_id"], timeout_s=120)
        messages = client.get(f"/api/threads/{body['thread_id']}/messages").json()["items"]
        return run, messages[-1]["content"]


def test_upload_ask_delete_ask(platform: Any) -> None:
    token = platform.login()
    rows = list(generate("support_chatbot", days=1, requests_per_day=400, seed=4, start=date(2025, 10, 6)))
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    with platform.stack.client(token) as client:
        uploaded = client.post("/api/usage", content=body, headers={"Content-Type": "application/x-ndjson"})
        assert uploaded.status_code == 201, uploaded.text
        assert uploaded.json()["rows_inserted"] == 400
        assert client.get("/api/usage/summary").json()["records"] == 400
        assert client.post("/api/usage", content=b"").status_code == 400

    run, answer = ask(platform, token, "How can we cut our LLM costs?")
    assert run["status"] == "completed", run
    assert run["cost_usd"] > 0  # the mock models are priced by the catalog
    assert "## LLM cost report" in answer and "Data: 400 requests from 2025-10-06 to 2025-10-06" in answer
    assert "Cache the repeated prompt prefixes on gpt-4o" in answer
    events = platform.stack.log_events(run["id"] if "id" in run else run["run_id"])
    started = [e.agent_name for e in events if e.type == "agent_started"]
    assert started[0] == "supervisor" and started.count("supervisor") == 1, started  # announced once per run
    assert {"triage", "data", "optimization", "actions", "reporting"} <= set(started)
    tools = [e.data["tool"] for e in events if e.type == "tool_completed"]
    assert {"caching_opportunity", "batch_opportunity", "rank_recommendations", "what_if"} <= set(tools)

    with platform.stack.client(token) as client:
        assert client.delete("/api/usage").json()["deleted"] == 400
    run, answer = ask(platform, token, "How can we cut our LLM costs?")
    assert run["status"] == "completed" and "your account has none yet" in answer
