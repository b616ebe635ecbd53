"""Entry points of the agent service (one source, two functions):

- ``agent_api`` (HTTP): the REST API (threads, messages, runs, events, costs, usage).
- ``agent_worker`` (CloudEvent, Pub/Sub push of ``agent-requests``): executes runs; also takes the pushes of
  ``usage-rollups`` (rollup refreshes asked by live ingestion), told apart by the message's ``kind`` attribute.

Only light modules are imported here; Google clients, the LLM SDKs and the pipeline load in the background
after the fork (startup components) or on first use. The role comes from FUNCTION_TARGET, which
functions-framework (and Cloud Functions) set before importing this file, so each deployment starts only
the components its function needs.
"""

from __future__ import annotations

import os
from typing import Any

import functions_framework

from functions.agent.components import components
from functions.agent.settings import AgentSettings
from shared.config import load_settings
from shared.http import json_not_found
from shared.service import init_service

ROLE = "worker" if os.environ.get("FUNCTION_TARGET") == "agent_worker" else "api"

settings = load_settings(AgentSettings)
manager = init_service("agent-worker" if ROLE == "worker" else "agent-api", settings)
manager.register_all(components(ROLE, settings))

if ROLE == "api":
    from functions.agent.api.app import build_router
    from functions.agent.deps import AgentDeps

    router = build_router(AgentDeps(settings, manager))
else:
    from functions.agent.worker.handler import Worker

    worker = Worker(settings, manager)

manager.start_when_serving()


functions_framework.errorhandler(404)(json_not_found)  # paths the catch-all route cannot match


@functions_framework.http
def agent_api(request: Any) -> Any:
    try:
        return router(request)
    finally:
        manager.release_deferred()  # deferred components (shared.startup.Component.deferred) may start now


@functions_framework.cloud_event
def agent_worker(event: Any) -> None:
    from functions.agent.worker import rollups
    from functions.agent.worker.handler import RetryLater

    try:
        if rollups.is_rollup_request(event.data):
            rollups.handle(worker, event.data)
        else:
            worker.handle(event.data)
    except RetryLater as exc:
        import flask

        # Not a 2xx: Pub/Sub redelivers with backoff.
        flask.abort(exc.status, str(exc))
