"""Topic and subscription names: one definition read by the code, the local stack and Terraform."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

TOPOLOGY_FILE = Path(__file__).with_name("pubsub_topology.json")

AGENT_REQUESTS = "agent-requests"
AGENT_EVENTS = "agent-events"
WORKER_SUBSCRIPTION = "agent-worker"
# Rollup refresh requests of live ingestion (functions/agent/ingest), pushed to the agent worker.
USAGE_ROLLUPS = "usage-rollups"
ROLLUP_SUBSCRIPTION = "rollup-refresh"


@cache
def topology() -> dict[str, Any]:
    return json.loads(TOPOLOGY_FILE.read_text())


def topic_path(project: str, topic: str) -> str:
    return f"projects/{project}/topics/{topic}"


def subscription_path(project: str, subscription: str) -> str:
    return f"projects/{project}/subscriptions/{subscription}"
