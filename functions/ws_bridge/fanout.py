"""The per-instance subscription to ``agent-events`` and the replay reader of the Firestore event log."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from shared.models.events import AgentEvent
from shared.pubsub_topology import AGENT_EVENTS, subscription_path, topic_path

log = logging.getLogger("fanout")


class EventSubscription:
    """Creates ``ws-bridge-<id>`` on agent-events (ordering on, expiration TTL), streams it on the client's
    threads and hands each event to ``on_event(user_id, event)``; deleted on shutdown."""

    def __init__(self, project: str, ttl_s: int, on_event: Callable[[str, AgentEvent], None]) -> None:
        self.project = project
        self.ttl_s = ttl_s
        self.on_event = on_event
        self.name = subscription_path(project, f"ws-bridge-{uuid.uuid4().hex[:12]}")
        self._subscriber: Any = None
        self._future: Any = None

    def start(self) -> str:
        from google.cloud import pubsub_v1

        self._subscriber = pubsub_v1.SubscriberClient()
        self._subscriber.create_subscription(
            request={
                "name": self.name,
                "topic": topic_path(self.project, AGENT_EVENTS),
                "enable_message_ordering": True,
                "ack_deadline_seconds": 30,
                "expiration_policy": {"ttl": {"seconds": self.ttl_s}},
            }
        )
        self._future = self._subscriber.subscribe(self.name, callback=self._callback)
        return self.name

    def _callback(self, message: Any) -> None:
        try:
            event = AgentEvent.from_bytes(message.data)
            self.on_event(message.attributes.get("user_id", ""), event)
        except Exception:
            log.exception("dropping malformed agent event")
        message.ack()  # events for nobody connected are acked and dropped; replay covers reconnects

    def stop(self) -> None:
        if self._future is not None:
            self._future.cancel()
        if self._subscriber is not None:
            try:
                self._subscriber.delete_subscription(request={"subscription": self.name}, timeout=5)
            except Exception as exc:  # the TTL removes it anyway
                log.warning("could not delete subscription", extra={"reason": type(exc).__name__})


def replay(user_id: str, thread_id: str, run_id: str | None, after_seq: int) -> list[AgentEvent]:
    """Events of the run (or of every run of the thread) with seq > after_seq, in order, the user's only."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    from shared.firestore import collection_name, get_client

    runs = get_client().collection(collection_name("runs"))
    if run_id:
        snap = runs.document(run_id).get()
        run_ids = [run_id] if snap.exists and snap.get("user_id") == user_id else []
    else:
        query = runs.where(filter=FieldFilter("thread_id", "==", thread_id))
        run_ids = [d.id for d in query.stream() if d.get("user_id") == user_id]
    events: list[AgentEvent] = []
    for rid in run_ids:
        docs = (
            runs.document(rid)
            .collection("events")
            .where(filter=FieldFilter("seq", ">", after_seq))
            .order_by("seq")
            .stream()
        )
        for doc in docs:
            data = {k: v for k, v in doc.to_dict().items() if k not in ("user_id", "expires_at")}
            events.append(AgentEvent.model_validate(data))
    events.sort(key=lambda e: (e.ts, e.run_id, e.seq))
    return events
