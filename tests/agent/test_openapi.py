"""docs/api/agent.openapi.yaml matches the routes the agent API really serves (usage routes included)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from functions.agent.api.app import build_router
from functions.agent.context import AgentContext
from functions.agent.settings import AgentSettings
from shared.config import REPO_ROOT, load_settings
from shared.models.events import EVENT_TYPES
from shared.startup import StartupManager

DOC = REPO_ROOT / "docs/api/agent.openapi.yaml"
HEALTH = {("GET", "/health/live"), ("GET", "/health/ready"), ("GET", "/health/startup")}
METHODS = {"get", "post", "put", "patch", "delete"}


def _doc() -> dict[str, Any]:
    return yaml.safe_load(DOC.read_text())


def _documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item if method in METHODS}


def test_documented_routes_are_the_served_routes() -> None:
    settings = load_settings(AgentSettings, {"NETRA_ENV": "test", "DATABASE_URL": "postgresql://u:p@127.0.0.1:1/d"})
    router = build_router(AgentContext(settings, StartupManager("agent-api")))
    served = {(m, re.sub(r"\{\w+\}", "{id}", p)) for m, p in router.routes()} | HEALTH
    documented = {(m, re.sub(r"\{\w+\}", "{id}", p)) for m, p in _documented(_doc())}
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"


def test_every_operation_is_complete() -> None:
    doc = _doc()
    assert doc["openapi"].startswith("3.")
    operation_ids = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            operation_ids.append(op["operationId"])
            codes = set(op["responses"])
            assert any(c.startswith("2") for c in codes), (method, path)
            if path.startswith("/api/"):
                assert "401" in codes and "503" in codes, (method, path)
                assert op.get("security", doc["security"]) == [{"bearer": []}], (method, path)
            if "{id}" in path:
                assert "404" in codes, (method, path)
    assert len(operation_ids) == len(set(operation_ids))


def test_event_schema_matches_the_shared_model() -> None:
    schema = _doc()["components"]["schemas"]["AgentEvent"]
    assert tuple(schema["properties"]["type"]["enum"]) == EVENT_TYPES
