"""Entry points of the agent service (one source, two functions):

- ``agent_api`` (HTTP): the REST API (threads, messages, runs, events, costs, usage).
- ``agent_worker`` (CloudEvent, Pub/Sub push of ``agent-requests``): executes runs; also takes the pushes of
  ``usage-rollups`` (rollup refreshes asked by live ingestion), told apart by the message's ``kind`` attribute.

Only light modules are imported here; Google clients, the LLM SDKs and the pipeline load in the background
after the fork (startup components) or on first use. The role comes from FUNCTION_TARGET, which
functions-framework (and Cloud Functions) set before importing this file, so each deployment starts only
the components its function needs. The app is built by functions/agent/app.py (create_app); this module
holds only what the runtime looks up.
"""

from __future__ import annotations

import os
from typing import Any

import functions_framework

from functions.agent.app import Role, create_app
from functions.agent.settings import AgentSettings
from shared.config import load_settings
from shared.http import json_not_found

app = create_app(load_settings(AgentSettings), Role.for_target(os.environ.get("FUNCTION_TARGET")))

functions_framework.errorhandler(404)(json_not_found)  # paths the catch-all route cannot match


@functions_framework.http
def agent_api(request: Any) -> Any:
    return app.http(request)


@functions_framework.cloud_event
def agent_worker(event: Any) -> None:
    from functions.agent.worker.handler import RetryLater

    try:
        app.event(event.data)
    except RetryLater as exc:
        import flask

        # Not a 2xx: Pub/Sub redelivers with backoff.
        flask.abort(exc.status, str(exc))
