"""Publishing to ``agent-requests`` and ``agent-events`` with the official client, created on first use.

Two clients because their retry semantics differ: with message ordering enabled, the library retries
every publish of that client forever, which suits events (order matters, a late duplicate is harmless)
but not a run request, where the API must answer 503 within a bound when Pub/Sub is down.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from shared.errors import NetraError
from shared.models.events import AgentEvent, AgentRequest
from shared.models.rollups import KIND as ROLLUP_KIND
from shared.models.rollups import RollupRequest
from shared.pubsub_topology import AGENT_EVENTS, AGENT_REQUESTS, USAGE_ROLLUPS, topic_path
from shared.startup import CircuitBreaker

log = logging.getLogger("agent.pubsub")


class PublishFailed(NetraError):
    """Pub/Sub did not accept a message within the time allowed. Holds no payload."""


_lock = threading.Lock()
_clients: dict[str, Any] = {}
request_breaker = CircuitBreaker("pubsub", failure_threshold=3, recovery_s=5.0)


def _client(kind: str) -> Any:
    client = _clients.get(kind)
    if client is not None:
        return client
    with _lock:
        if kind not in _clients:
            from google.cloud import pubsub_v1

            # One message per batch: latency matters more than throughput here (a run's first event).
            batch = pubsub_v1.types.BatchSettings(max_messages=1, max_latency=0.001)
            options = pubsub_v1.types.PublisherOptions(enable_message_ordering=(kind == "events"))
            _clients[kind] = pubsub_v1.PublisherClient(batch_settings=batch, publisher_options=options)
        return _clients[kind]


def warm(project: str) -> None:
    """Import the library, build both clients and open the channel (a startup component, so the first request
    pays none of it). The connection check is best effort: a Pub/Sub outage is reported per request (503)."""
    requests = _client("requests")
    _client("events")
    try:
        requests.api.get_topic(topic=topic_path(project, AGENT_REQUESTS), timeout=2.0)
    except Exception as exc:
        log.warning(
            "Pub/Sub not reachable at start; publishing will retry per request", extra={"reason": type(exc).__name__}
        )


def publish_request(project: str, request: AgentRequest, timeout_s: float) -> str:
    """Publish one run request; raise PublishFailed after ``timeout_s`` (retries included)."""
    from google.api_core.retry import Retry

    if not request_breaker.allow():
        raise PublishFailed(f"Pub/Sub unavailable (circuit open, retry in {request_breaker.retry_after():.0f}s)")
    retry = Retry(initial=0.1, maximum=1.0, multiplier=2.0, timeout=timeout_s)
    try:
        future = _client("requests").publish(
            topic_path(project, AGENT_REQUESTS),
            request.to_bytes(),
            retry=retry,
            timeout=timeout_s,
            run_id=request.run_id,
            user_id=request.user_id,
        )
        message_id = future.result(timeout=timeout_s + 1.0)
    except Exception as exc:
        request_breaker.record_failure()
        raise PublishFailed(f"publishing to {AGENT_REQUESTS} failed: {type(exc).__name__}") from None
    request_breaker.record_success()
    return str(message_id)


def publish_rollup(project: str, request: RollupRequest, timeout_s: float) -> str:
    """Ask the worker to refresh one user's rollups; PublishFailed after ``timeout_s`` (the records are stored
    already: a failure only delays the refresh to a later batch or the hourly rollup job)."""
    from google.api_core.retry import Retry

    retry = Retry(initial=0.1, maximum=1.0, multiplier=2.0, timeout=timeout_s)
    try:
        future = _client("requests").publish(
            topic_path(project, USAGE_ROLLUPS),
            request.to_bytes(),
            retry=retry,
            timeout=timeout_s,
            kind=ROLLUP_KIND,
            user_id=request.user_id,
        )
        return str(future.result(timeout=timeout_s + 1.0))
    except Exception as exc:
        raise PublishFailed(f"publishing to {USAGE_ROLLUPS} failed: {type(exc).__name__}") from None


def publish_event(project: str, event: AgentEvent, user_id: str, timeout_s: float = 15.0) -> str:
    """Publish one event with ordering key = thread id; bounded retries, resuming a paused key between."""
    client = _client("events")
    topic = topic_path(project, AGENT_EVENTS)
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    last_error = "no attempt"
    while True:
        try:
            # retry=None: no library retries (they would be unbounded with ordering); this loop bounds them.
            future = client.publish(
                topic, event.to_bytes(), ordering_key=event.thread_id, retry=None, **event.attributes(user_id)
            )
            return str(future.result(timeout=max(0.5, deadline - time.monotonic())))
        except Exception as exc:
            last_error = type(exc).__name__
            try:
                client.resume_publish(topic, event.thread_id)
            except ValueError:
                pass  # the key was never paused
        if time.monotonic() + delay >= deadline:
            raise PublishFailed(
                f"publishing event seq {event.seq} of run {event.run_id} to {AGENT_EVENTS} failed: {last_error}"
            )
        log.warning(
            "event publish failed, retrying", extra={"run_id": event.run_id, "seq": event.seq, "reason": last_error}
        )
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
