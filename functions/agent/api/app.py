"""Assembles the agent API's router: the platform's routes, then the usage routes when that module exists."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Any

from functions.agent.api import costs, messages, runs, threads
from functions.agent.context import AgentContext
from shared.http import Router

log = logging.getLogger("agent.api")

USAGE_ROUTES = "functions.agent.usage.routes"


def register_usage_routes(router: Router, deps: AgentContext) -> bool:
    try:
        present = importlib.util.find_spec(USAGE_ROUTES) is not None
    except ModuleNotFoundError:  # the usage package itself is absent
        present = False
    if not present:
        return False
    importlib.import_module(USAGE_ROUTES).register(router, deps)
    return True


def build_router(deps: AgentContext) -> Router:
    settings = deps.settings
    router = Router("agent-api", settings.origins, settings.max_body_bytes, health=deps.manager.health)
    threads.register(router, deps)
    messages.register(router, deps)
    runs.register(router, deps)
    costs.register(router, deps)
    register_usage_routes(router, deps)
    from functions.agent.ingest import routes as ingest_routes

    ingest_routes.register(router, deps, request_rollup=rollup_requester(deps))
    return router


def rollup_requester(deps: AgentContext) -> Any:
    """Publishes a rollup refresh to ``usage-rollups`` (pushed to the agent worker) once the Pub/Sub client is
    up; an ingest request never waits for the deferred client to start (False: the next batch asks again)."""

    def request(user_id: str, data_version: int) -> bool:
        if not deps.manager.is_up("pubsub"):
            return False
        from functions.agent import pubsub
        from shared.models.rollups import RollupRequest

        settings = deps.settings
        message = RollupRequest(user_id=user_id, data_version=data_version)
        # The exporter waits for this answer: a slow Pub/Sub delays the refresh, not the ingest request.
        pubsub.publish_rollup(settings.google_cloud_project, message, min(settings.publish_timeout_s, 2.0))
        return True

    return request
