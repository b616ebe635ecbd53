"""The per-instance subscription to ``agent-events``: created at start, streamed on the client's threads,
deleted on shutdown (its expiration TTL removes it if the instance dies without deleting it)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from functions.ws_bridge.hub import Delivery
from shared.models.events import AgentEvent
from shared.pubsub_topology import AGENT_EVENTS, subscription_path, topic_path

log = logging.getLogger("ws_bridge.fanout")


class EventSubscription:
    """``ws-bridge-<id>`` on agent-events with message ordering on (the worker publishes with ordering key =
    thread id, so a thread's events arrive in order). Every message is acked: events for nobody connected
    here are dropped, because a client that connects later replays them from the event log."""

    def __init__(
        self,
        project: str,
        ttl_s: int,
        wants: Callable[[str], bool],
        on_event: Callable[[str, Delivery], None],
    ) -> None:
        self.project = project
        self.ttl_s = ttl_s
        self.wants = wants
        self.on_event = on_event
        self.name = subscription_path(project, f"ws-bridge-{uuid.uuid4().hex[:12]}")
        self._subscriber: Any = None
        self._future: Any = None
        self.malformed = 0

    def start(self) -> EventSubscription:
        from google.cloud import pubsub_v1

        self._subscriber = pubsub_v1.SubscriberClient()
        self._subscriber.create_subscription(
            request={
                "name": self.name,
                "topic": topic_path(self.project, AGENT_EVENTS),
                "enable_message_ordering": True,
                "ack_deadline_seconds": 30,
                "expiration_policy": {"ttl": {"seconds": self.ttl_s}},
            },
            timeout=10,
        )
        self._future = self._subscriber.subscribe(self.name, callback=self._callback)
        log.info("subscribed to agent-events", extra={"subscription": self.name})
        return self

    def _callback(self, message: Any) -> None:
        user_id = message.attributes.get("user_id", "")
        if self.wants(user_id):
            try:
                data = message.data.decode()
                self.on_event(user_id, Delivery(AgentEvent.model_validate_json(data), data))
            except Exception as exc:
                self.malformed += 1
                log.warning("dropping malformed agent event", extra={"reason": type(exc).__name__})
        message.ack()

    def stop(self) -> None:
        if self._future is not None:
            self._future.cancel()
            try:
                self._future.result(timeout=2)
            except Exception:  # noqa: S110 - cancelled is the expected outcome
                pass
        if self._subscriber is not None:
            try:
                self._subscriber.delete_subscription(request={"subscription": self.name}, timeout=3)
                log.info("deleted subscription", extra={"subscription": self.name})
            except Exception as exc:  # its expiration TTL removes it anyway
                log.warning("could not delete subscription", extra={"reason": type(exc).__name__})
            self._subscriber.close()
