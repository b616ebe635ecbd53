"""Push subscriptions: POST each message to ``push_config.push_endpoint`` in the standard wrapper.

A 2xx answer acks the message; any other status, a connection error or a timeout (the ack deadline)
nacks it, and the store redelivers it after an exponential backoff (retry_policy, else 100 ms doubling
up to 10 s). One dispatcher thread per push subscription leases messages like a streaming pull
would, with a bound on messages in flight; a shared thread pool makes the HTTP calls. Ordering keys
need nothing here: the store never hands out the next message of a key before the previous is acked.
"""

from __future__ import annotations

import base64
import functools
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from emulators.pubsub.errors import PubSubError
from emulators.pubsub.store import Consumer, Lease, Store, SubscriptionState

log = logging.getLogger("emulators.pubsub.push")

MAX_IN_FLIGHT_PER_SUBSCRIPTION = 64


def push_body(subscription: str, lease: Lease, with_attempt: bool) -> dict[str, Any]:
    """The JSON body the real service POSTs (both spellings of id and time, as it sends them)."""
    message = lease.delivery.message
    publish_time = message.publish_time.ToJsonString()
    body_message: dict[str, Any] = {
        "data": base64.b64encode(message.data).decode("ascii"),
        "messageId": message.message_id,
        "message_id": message.message_id,
        "publishTime": publish_time,
        "publish_time": publish_time,
    }
    if message.attributes:
        body_message["attributes"] = dict(message.attributes)
    if message.ordering_key:
        body_message["orderingKey"] = message.ordering_key
    body: dict[str, Any] = {"message": body_message, "subscription": subscription}
    if with_attempt:
        body["deliveryAttempt"] = lease.delivery.attempts
    return body


class _DaemonPool:
    """A fixed set of daemon worker threads: unlike ThreadPoolExecutor's, a push stuck on a slow
    endpoint cannot keep the process alive after the server stopped."""

    def __init__(self, workers: int) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"pubsub-push-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:
                log.exception("push delivery failed unexpectedly")


def _safe_url(url: str) -> str:
    # Endpoints may carry a token in the query string; logs get scheme, host and path only.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class PushManager:
    """Starts a dispatcher for each push subscription; ``sync(name)`` after any subscription change."""

    def __init__(self, store: Store, workers: int = 32) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._dispatchers: dict[int, threading.Thread] = {}
        self._pool = _DaemonPool(workers)
        self._http = httpx.Client(
            limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers), follow_redirects=False
        )
        self._closed = False

    def sync(self, name: str) -> None:
        # Decided under self._lock, like a dispatcher's decision to stop, so a subscription switched
        # push -> pull -> push quickly cannot end up with its old dispatcher gone and no new one.
        with self._lock:
            if self._closed:
                return
            with self.store.lock:
                state = self.store.subscriptions.get(name)
                if state is None or not self._pushing(state):
                    return
            thread = self._dispatchers.get(id(state))
            if thread is not None and thread.is_alive():
                return
            thread = threading.Thread(target=self._dispatch, args=(state,), name=f"pubsub-push-{name}", daemon=True)
            self._dispatchers[id(state)] = thread
            thread.start()

    @staticmethod
    def _pushing(state: SubscriptionState) -> bool:
        return bool(state.push_endpoint) and not state.config.detached and not state.deleted

    def close(self) -> None:
        with self._lock:
            self._closed = True
            threads = list(self._dispatchers.values())
        for thread in threads:
            thread.join(5)
        # Pushes in flight are not waited for: a slow endpoint may hold one for the whole ack deadline.
        self._pool.close()
        self._http.close()

    def _dispatch(self, state: SubscriptionState) -> None:
        consumer = Consumer(
            ack_deadline_s=state.config.ack_deadline_seconds, max_messages=MAX_IN_FLIGHT_PER_SUBSCRIPTION
        )
        while True:
            with self._lock, self.store.lock:
                # Stop once the subscription is deleted, detached or turned into a pull subscription.
                if self._closed or self.store.closed or not self._pushing(state):
                    self._dispatchers.pop(id(state), None)
                    return
                endpoint = state.push_endpoint
                consumer.ack_deadline_s = state.config.ack_deadline_seconds
                with_attempt = state.max_delivery_attempts > 0
            try:
                leases = self.store.take(state.name, MAX_IN_FLIGHT_PER_SUBSCRIPTION, consumer, 0.5, state=state)
            except PubSubError:
                continue  # deleted: the check above ends the loop
            for lease in leases:
                self._pool.submit(
                    functools.partial(self._deliver, state, lease, endpoint, consumer.ack_deadline_s, with_attempt)
                )

    def _deliver(
        self, state: SubscriptionState, lease: Lease, endpoint: str, timeout_s: float, with_attempt: bool
    ) -> None:
        body = push_body(state.name, lease, with_attempt)
        try:
            response = self._http.post(endpoint, json=body, timeout=timeout_s)
            ok = 200 <= response.status_code < 300
            outcome = str(response.status_code)
        except (httpx.HTTPError, RuntimeError) as exc:  # RuntimeError: the client closed with the server
            ok = False
            outcome = type(exc).__name__
        try:
            if ok:
                self.store.acknowledge(state.name, [lease.ack_id], state=state)
            else:
                log.info(
                    "push to %s for %s failed (%s); message %s will be retried",
                    _safe_url(endpoint),
                    state.name,
                    outcome,
                    lease.delivery.message.message_id,
                )
                self.store.modify_ack_deadline(state.name, [lease.ack_id], 0, state=state)
        except PubSubError:
            pass  # the subscription went away meanwhile
