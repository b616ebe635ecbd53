"""All emulator state: topics, subscriptions, their backlogs and the leases of delivered messages.

One re-entrant lock guards everything (the GIL serialises the work anyway, and one lock cannot
deadlock); each subscription has its own condition on that lock so waiting pullers wake only for
their subscription. A timer thread expires ack deadlines and releases messages whose retry backoff
has passed.

Per subscription, a message waiting for delivery sits in ``ready``. With message ordering, only the
oldest unacked message of each ordering key is ever in ``ready`` or leased: the rest of that key wait
in ``key_queues`` until it is acked, and a nack or expiry puts that same message back first.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from google.protobuf import field_mask_pb2
from google.pubsub_v1 import types

from emulators.pubsub.errors import (
    DELETED_TOPIC,
    already_exists,
    check_project,
    check_subscription,
    check_topic,
    invalid,
    not_found,
)
from emulators.pubsub.filters import Predicate, compile_filter

TopicPb = types.Topic.pb()
SubscriptionPb = types.Subscription.pb()
MessagePb = types.PubsubMessage.pb()

log = logging.getLogger("emulators.pubsub")

DEFAULT_ACK_DEADLINE_S = 10
MAX_ACK_DEADLINE_S = 600
DEFAULT_MAX_DELIVERY_ATTEMPTS = 5
# Backoff between redeliveries of a push message (and of a pull message when a retry policy is set).
DEFAULT_MIN_BACKOFF_S = 0.1
DEFAULT_MAX_BACKOFF_S = 10.0
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_KEY_BYTES = 256
MAX_ATTRIBUTE_VALUE_BYTES = 1024
MAX_ORDERING_KEY_BYTES = 1024
MAX_MESSAGE_BYTES = 10 * 1024 * 1024

_UPDATABLE_SUBSCRIPTION_FIELDS = {
    "ack_deadline_seconds",
    "push_config",
    "labels",
    "retry_policy",
    "dead_letter_policy",
    "expiration_policy",
    "message_retention_duration",
    "retain_acked_messages",
    "enable_exactly_once_delivery",
    "detached",
}
_UPDATABLE_TOPIC_FIELDS = {
    "labels",
    "message_retention_duration",
    "message_storage_policy",
    "kms_key_name",
    "schema_settings",
}


@dataclass(eq=False)
class Delivery:
    """One published message as seen by one subscription."""

    seq: int
    message: MessagePb  # shared between subscriptions; never mutated after publish
    size: int
    attempts: int = 0


@dataclass(eq=False)
class Consumer:
    """Whoever holds leases under flow control: a StreamingPull stream or a push dispatcher."""

    ack_deadline_s: float
    max_messages: int = 0  # 0 = no limit
    max_bytes: int = 0
    outstanding: int = 0
    outstanding_bytes: int = 0
    closed: bool = False


@dataclass(eq=False)
class Lease:
    ack_id: str
    delivery: Delivery
    deadline: float
    owner: Consumer | None


@dataclass(eq=False)
class SubscriptionState:
    config: SubscriptionPb
    predicate: Predicate | None
    uid: int
    ready: deque[Delivery] = field(default_factory=deque)
    key_queues: dict[str, deque[Delivery]] = field(default_factory=dict)
    leases: dict[str, Lease] = field(default_factory=dict)
    cond: threading.Condition | None = None
    deleted: bool = False

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def ordered(self) -> bool:
        return self.config.enable_message_ordering

    @property
    def push_endpoint(self) -> str:
        return self.config.push_config.push_endpoint

    @property
    def max_delivery_attempts(self) -> int:
        """0 when there is no dead-letter policy (then delivery attempts are not reported either)."""
        policy = self.config.dead_letter_policy
        if not policy.dead_letter_topic:
            return 0
        return policy.max_delivery_attempts or DEFAULT_MAX_DELIVERY_ATTEMPTS

    def backlog(self) -> int:
        waiting = sum(len(q) for q in self.key_queues.values()) if self.ordered else 0
        return len(self.ready) + len(self.leases) + waiting


@dataclass(eq=False)
class TopicState:
    config: TopicPb
    subscriptions: set[str] = field(default_factory=set)


def _seconds(duration: object) -> float:
    return duration.ToNanoseconds() / 1e9  # type: ignore[attr-defined]


def _page(names: list[str], page_size: int, page_token: str) -> tuple[list[str], str]:
    """Offset paging over a sorted list; the token is the last name returned."""
    if page_size < 0:
        raise invalid(f"page_size must not be negative, got {page_size}.")
    start = 0
    if page_token:
        start = next((i for i, n in enumerate(names) if n > page_token), len(names))
    size = page_size or 1000
    chunk = names[start : start + size]
    token = chunk[-1] if start + size < len(names) and chunk else ""
    return chunk, token


def validate_message(message: MessagePb) -> None:
    if not message.data and not message.attributes:
        raise invalid("Some messages are empty: a message needs data or at least one attribute.")
    if len(message.attributes) > MAX_ATTRIBUTES:
        raise invalid(f"A message has {len(message.attributes)} attributes; the maximum is {MAX_ATTRIBUTES}.")
    for key, value in message.attributes.items():
        if not key:
            raise invalid("An attribute key is empty.")
        if key.startswith("goog"):
            raise invalid(f"Attribute key {key!r} is reserved: keys must not start with 'goog'.")
        if len(key.encode()) > MAX_ATTRIBUTE_KEY_BYTES:
            raise invalid(f"Attribute key {key[:40]!r}... is longer than {MAX_ATTRIBUTE_KEY_BYTES} bytes.")
        if len(value.encode()) > MAX_ATTRIBUTE_VALUE_BYTES:
            raise invalid(f"The value of attribute {key!r} is longer than {MAX_ATTRIBUTE_VALUE_BYTES} bytes.")
    if len(message.ordering_key.encode()) > MAX_ORDERING_KEY_BYTES:
        raise invalid(f"An ordering key is longer than {MAX_ORDERING_KEY_BYTES} bytes.")
    if message.ByteSize() > MAX_MESSAGE_BYTES:
        raise invalid(f"A message is {message.ByteSize()} bytes; the maximum is {MAX_MESSAGE_BYTES}.")


class Store:
    """Thread-safe state of one emulator process. ``on_subscription_change(name)`` runs outside the lock."""

    def __init__(self, on_subscription_change: Callable[[str], None] | None = None) -> None:
        self.lock = threading.RLock()
        self.topics: dict[str, TopicState] = {}
        self.subscriptions: dict[str, SubscriptionState] = {}
        self.closed = False
        self.on_subscription_change = on_subscription_change
        self._message_ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._uids = itertools.count(1)
        self._timer_seq = itertools.count()
        self._timers: list[tuple[float, int, str, SubscriptionState, object]] = []
        self._timer_cond = threading.Condition(self.lock)
        self._timer_thread = threading.Thread(target=self._run_timers, name="pubsub-timers", daemon=True)
        self._timer_thread.start()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self._timer_cond.notify_all()
            for sub in self.subscriptions.values():
                assert sub.cond is not None
                sub.cond.notify_all()
        self._timer_thread.join(5)

    def _changed(self, name: str) -> None:
        if self.on_subscription_change is not None:
            self.on_subscription_change(name)

    # -- topics ------------------------------------------------------------------------------------
    def create_topic(self, topic: TopicPb) -> TopicPb:
        check_topic(topic.name)
        with self.lock:
            if topic.name in self.topics:
                raise already_exists(topic.name)
            config = TopicPb()
            config.CopyFrom(topic)
            self.topics[topic.name] = TopicState(config)
            return config

    def get_topic(self, name: str) -> TopicPb:
        check_topic(name)
        with self.lock:
            return self._topic(name).config

    def update_topic(self, topic: TopicPb, mask: field_mask_pb2.FieldMask) -> TopicPb:
        check_topic(topic.name)
        if not mask.paths:
            raise invalid("update_mask must name at least one field.")
        for path in mask.paths:
            if path.split(".")[0] not in _UPDATABLE_TOPIC_FIELDS:
                raise invalid(
                    f"Field {path!r} of a topic cannot be updated; updatable: "
                    f"{', '.join(sorted(_UPDATABLE_TOPIC_FIELDS))}."
                )
        with self.lock:
            state = self._topic(topic.name)
            mask.MergeMessage(topic, state.config, replace_message_field=True, replace_repeated_field=True)
            return state.config

    def list_topics(self, project: str, page_size: int, page_token: str) -> tuple[list[TopicPb], str]:
        check_project(project)
        with self.lock:
            names = sorted(n for n in self.topics if n.startswith(project + "/"))
            chunk, token = _page(names, page_size, page_token)
            return [self.topics[n].config for n in chunk], token

    def list_topic_subscriptions(self, topic: str, page_size: int, page_token: str) -> tuple[list[str], str]:
        check_topic(topic)
        with self.lock:
            return _page(sorted(self._topic(topic).subscriptions), page_size, page_token)

    def delete_topic(self, name: str) -> None:
        check_topic(name)
        with self.lock:
            state = self._topic(name)
            del self.topics[name]
            # As in the real service, subscriptions outlive their topic and keep their backlog.
            for sub_name in state.subscriptions:
                self.subscriptions[sub_name].config.topic = DELETED_TOPIC

    def _topic(self, name: str) -> TopicState:
        state = self.topics.get(name)
        if state is None:
            raise not_found(name)
        return state

    # -- subscriptions -----------------------------------------------------------------------------
    def _validated(self, config: SubscriptionPb) -> Predicate | None:
        """Check and normalise a subscription's settings in place; returns its compiled filter."""
        check_subscription(config.name)
        if config.ack_deadline_seconds == 0:
            config.ack_deadline_seconds = DEFAULT_ACK_DEADLINE_S
        if not DEFAULT_ACK_DEADLINE_S <= config.ack_deadline_seconds <= MAX_ACK_DEADLINE_S:
            raise invalid(
                f"ack_deadline_seconds must be between {DEFAULT_ACK_DEADLINE_S} and {MAX_ACK_DEADLINE_S}, "
                f"got {config.ack_deadline_seconds}."
            )
        endpoint = config.push_config.push_endpoint
        if endpoint and not endpoint.startswith(("http://", "https://")):
            raise invalid(f"push_config.push_endpoint must be an http:// or https:// URL, got {endpoint!r}.")
        if config.push_config.HasField("no_wrapper"):
            raise invalid("push_config.no_wrapper is not supported by this emulator; use the default wrapper.")
        policy = config.dead_letter_policy
        if config.HasField("dead_letter_policy") and policy.dead_letter_topic:
            check_topic(policy.dead_letter_topic)
            if policy.max_delivery_attempts == 0:
                policy.max_delivery_attempts = DEFAULT_MAX_DELIVERY_ATTEMPTS
            if not 5 <= policy.max_delivery_attempts <= 100:
                raise invalid(
                    "dead_letter_policy.max_delivery_attempts must be between 5 and 100, "
                    f"got {policy.max_delivery_attempts}."
                )
        if config.HasField("retry_policy"):
            low = _seconds(config.retry_policy.minimum_backoff)
            high = _seconds(config.retry_policy.maximum_backoff)
            if not 0 <= low <= 600 or not 0 <= high <= 600:
                raise invalid("retry_policy backoffs must be between 0s and 600s.")
            if config.retry_policy.HasField("maximum_backoff") and high < low:
                raise invalid("retry_policy.maximum_backoff must not be less than minimum_backoff.")
        config.state = SubscriptionPb.State.ACTIVE
        return compile_filter(config.filter)

    def create_subscription(self, subscription: SubscriptionPb) -> SubscriptionPb:
        config = SubscriptionPb()
        config.CopyFrom(subscription)
        check_topic(config.topic)
        predicate = self._validated(config)
        with self.lock:
            if config.name in self.subscriptions:
                raise already_exists(config.name)
            topic = self._topic(config.topic)
            state = SubscriptionState(config, predicate, next(self._uids))
            state.cond = threading.Condition(self.lock)
            self.subscriptions[config.name] = state
            topic.subscriptions.add(config.name)
        self._changed(config.name)
        return config

    def get_subscription(self, name: str) -> SubscriptionPb:
        check_subscription(name)
        with self.lock:
            return self._sub(name).config

    def update_subscription(self, subscription: SubscriptionPb, mask: field_mask_pb2.FieldMask) -> SubscriptionPb:
        check_subscription(subscription.name)
        if not mask.paths:
            raise invalid("update_mask must name at least one field.")
        for path in mask.paths:
            if path.split(".")[0] not in _UPDATABLE_SUBSCRIPTION_FIELDS:
                raise invalid(
                    f"Field {path!r} of a subscription cannot be updated; updatable: "
                    f"{', '.join(sorted(_UPDATABLE_SUBSCRIPTION_FIELDS))}."
                )
        with self.lock:
            state = self._sub(subscription.name)
            updated = SubscriptionPb()
            updated.CopyFrom(state.config)
            mask.MergeMessage(subscription, updated, replace_message_field=True, replace_repeated_field=True)
            self._validated(updated)
            state.config = updated
            if updated.detached:
                self._detach(state)
            state.cond.notify_all()  # type: ignore[union-attr]
        self._changed(subscription.name)
        return updated

    def modify_push_config(self, name: str, push_config: object) -> None:
        check_subscription(name)
        with self.lock:
            state = self._sub(name)
            updated = SubscriptionPb()
            updated.CopyFrom(state.config)
            updated.push_config.CopyFrom(push_config)  # type: ignore[arg-type]
            self._validated(updated)
            state.config = updated
            state.cond.notify_all()  # type: ignore[union-attr]
        self._changed(name)

    def list_subscriptions(self, project: str, page_size: int, page_token: str) -> tuple[list[SubscriptionPb], str]:
        check_project(project)
        with self.lock:
            names = sorted(n for n in self.subscriptions if n.startswith(project + "/"))
            chunk, token = _page(names, page_size, page_token)
            return [self.subscriptions[n].config for n in chunk], token

    def delete_subscription(self, name: str) -> None:
        check_subscription(name)
        with self.lock:
            state = self._sub(name)
            del self.subscriptions[name]
            topic = self.topics.get(state.config.topic)
            if topic is not None:
                topic.subscriptions.discard(name)
            state.deleted = True
            self._drop_backlog(state)
            state.cond.notify_all()  # type: ignore[union-attr]
        self._changed(name)

    def detach_subscription(self, name: str) -> None:
        check_subscription(name)
        with self.lock:
            state = self._sub(name)
            state.config.detached = True
            self._detach(state)
            state.cond.notify_all()  # type: ignore[union-attr]
        self._changed(name)

    def _detach(self, state: SubscriptionState) -> None:
        topic = self.topics.get(state.config.topic)
        if topic is not None:
            topic.subscriptions.discard(state.name)
        self._drop_backlog(state)

    def _drop_backlog(self, state: SubscriptionState) -> None:
        for lease in list(state.leases.values()):
            self._end_lease(state, lease)
        state.ready.clear()
        state.key_queues.clear()

    def _sub(self, name: str) -> SubscriptionState:
        state = self.subscriptions.get(name)
        if state is None:
            raise not_found(name)
        return state

    def subscription_state(self, name: str) -> SubscriptionState:
        check_subscription(name)
        with self.lock:
            return self._sub(name)

    # -- publishing --------------------------------------------------------------------------------
    def publish(self, topic_name: str, messages: Sequence[MessagePb]) -> list[str]:
        check_topic(topic_name)
        if not messages:
            raise invalid("A publish request needs at least one message.")
        for message in messages:
            validate_message(message)
        with self.lock:
            return self._publish_locked(self._topic(topic_name), messages)

    def _publish_locked(self, topic: TopicState, messages: Iterable[MessagePb]) -> list[str]:
        now_ns = time.time_ns()
        stored: list[tuple[MessagePb, int]] = []
        for message in messages:
            copy = MessagePb()
            copy.CopyFrom(message)
            copy.message_id = str(next(self._message_ids))
            copy.publish_time.FromNanoseconds(now_ns)
            stored.append((copy, copy.ByteSize()))
        for sub_name in topic.subscriptions:
            state = self.subscriptions[sub_name]
            added = False
            for message, size in stored:
                # Messages that do not match the filter are acknowledged at once, i.e. never stored.
                if state.predicate is not None and not state.predicate(message.attributes):
                    continue
                self._enqueue(state, Delivery(next(self._seq), message, size))
                added = True
            if added:
                state.cond.notify_all()  # type: ignore[union-attr]
        return [m.message_id for m, _ in stored]

    def _enqueue(self, state: SubscriptionState, delivery: Delivery) -> None:
        key = delivery.message.ordering_key
        if state.ordered and key:
            queue = state.key_queues.setdefault(key, deque())
            queue.append(delivery)
            if len(queue) > 1:
                return  # held until the messages before it on this key are acked
        state.ready.append(delivery)

    # -- delivery ----------------------------------------------------------------------------------
    def take(
        self,
        name: str,
        max_messages: int,
        consumer: Consumer | None,
        wait_s: float,
        state: SubscriptionState | None = None,
    ) -> list[Lease]:
        """Lease up to ``max_messages`` ready messages, waiting up to ``wait_s`` for the first one.

        Returns [] on timeout or when the consumer or the store closes; raises NOT_FOUND once the
        subscription is deleted. Passing ``state`` pins one subscription object (push dispatchers).
        """
        with self.lock:
            sub = state if state is not None else self._sub(name)
            assert sub.cond is not None
            end = time.monotonic() + wait_s
            while True:
                if self.closed or (consumer is not None and consumer.closed):
                    return []
                if sub.deleted:
                    raise not_found(name)
                room = max_messages
                if consumer is not None and consumer.max_messages:
                    room = min(room, consumer.max_messages - consumer.outstanding)
                if sub.ready and room > 0:
                    break
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return []
                sub.cond.wait(remaining)
            now = time.monotonic()
            deadline = now + (consumer.ack_deadline_s if consumer is not None else sub.config.ack_deadline_seconds)
            leases: list[Lease] = []
            while sub.ready and len(leases) < room:
                delivery = sub.ready[0]
                if (
                    consumer is not None
                    and consumer.max_bytes
                    and leases
                    and consumer.outstanding_bytes + delivery.size > consumer.max_bytes
                ):
                    break  # always let one message through so a big one cannot stall the stream
                sub.ready.popleft()
                delivery.attempts += 1
                lease = Lease(f"{sub.uid}-{delivery.seq}-{delivery.attempts}", delivery, deadline, consumer)
                sub.leases[lease.ack_id] = lease
                if consumer is not None:
                    consumer.outstanding += 1
                    consumer.outstanding_bytes += delivery.size
                leases.append(lease)
            if leases:
                self._add_timer(deadline, "expire", sub, None)
            return leases

    def acknowledge(self, name: str, ack_ids: Iterable[str], state: SubscriptionState | None = None) -> None:
        with self.lock:
            sub = state if state is not None else self._sub(name)
            for ack_id in ack_ids:
                lease = sub.leases.get(ack_id)
                if lease is None:
                    continue  # expired, already acked, or from an older delivery: ignored like the real service
                self._end_lease(sub, lease)
                self._complete(sub, lease.delivery)
            sub.cond.notify_all()  # type: ignore[union-attr]

    def modify_ack_deadline(
        self, name: str, ack_ids: Iterable[str], seconds: int, state: SubscriptionState | None = None
    ) -> None:
        if not 0 <= seconds <= MAX_ACK_DEADLINE_S:
            raise invalid(f"ack_deadline_seconds must be between 0 and {MAX_ACK_DEADLINE_S}, got {seconds}.")
        with self.lock:
            sub = state if state is not None else self._sub(name)
            now = time.monotonic()
            extended = False
            for ack_id in ack_ids:
                lease = sub.leases.get(ack_id)
                if lease is None:
                    continue
                if seconds == 0:
                    self._end_lease(sub, lease)
                    self._retry(sub, lease.delivery)
                else:
                    lease.deadline = now + seconds
                    extended = True
            if extended:
                self._add_timer(now + seconds, "expire", sub, None)
            sub.cond.notify_all()  # type: ignore[union-attr]

    def close_consumer(self, name: str, consumer: Consumer) -> None:
        """The stream went away: its leases stay until their deadlines pass, as in the real service."""
        with self.lock:
            consumer.closed = True
            sub = self.subscriptions.get(name)
            if sub is not None:
                sub.cond.notify_all()  # type: ignore[union-attr]

    def _end_lease(self, sub: SubscriptionState, lease: Lease) -> None:
        del sub.leases[lease.ack_id]
        if lease.owner is not None:
            lease.owner.outstanding -= 1
            lease.owner.outstanding_bytes -= lease.delivery.size

    def _complete(self, sub: SubscriptionState, delivery: Delivery) -> None:
        """The message is done for this subscription; with ordering, release the next one of its key."""
        key = delivery.message.ordering_key
        if not (sub.ordered and key):
            return
        queue = sub.key_queues.get(key)
        if not queue or queue[0] is not delivery:
            return
        queue.popleft()
        if queue:
            sub.ready.append(queue[0])
        else:
            del sub.key_queues[key]

    def _retry(self, sub: SubscriptionState, delivery: Delivery) -> None:
        """After a nack, an expired deadline or a failed push: dead-letter, back off, or redeliver now."""
        max_attempts = sub.max_delivery_attempts
        if max_attempts and delivery.attempts >= max_attempts and self._dead_letter(sub, delivery):
            self._complete(sub, delivery)
            return
        delay = self._backoff(sub, delivery)
        if delay > 0:
            self._add_timer(time.monotonic() + delay, "release", sub, delivery)
        else:
            sub.ready.appendleft(delivery)  # redelivered before newer messages
            sub.cond.notify_all()  # type: ignore[union-attr]

    def _backoff(self, sub: SubscriptionState, delivery: Delivery) -> float:
        config = sub.config
        has_policy = config.HasField("retry_policy")
        if not has_policy and not sub.push_endpoint:
            return 0.0
        policy = config.retry_policy
        low = (
            _seconds(policy.minimum_backoff)
            if has_policy and policy.HasField("minimum_backoff")
            else DEFAULT_MIN_BACKOFF_S
        )
        high = (
            _seconds(policy.maximum_backoff)
            if has_policy and policy.HasField("maximum_backoff")
            else DEFAULT_MAX_BACKOFF_S
        )
        exponent = min(max(delivery.attempts - 1, 0), 30)
        return min(max(high, low), low * 2**exponent)

    def _dead_letter(self, sub: SubscriptionState, delivery: Delivery) -> bool:
        """Republish to the dead-letter topic; False (keep redelivering) when that topic does not exist."""
        topic_name = sub.config.dead_letter_policy.dead_letter_topic
        topic = self.topics.get(topic_name)
        if topic is None:
            log.warning(
                "dead-letter topic %s of %s does not exist; the message stays on the subscription", topic_name, sub.name
            )
            return False
        original = delivery.message
        message = MessagePb(data=original.data, ordering_key=original.ordering_key)
        message.attributes.update(original.attributes)
        # The same metadata attributes the real service adds to dead-lettered messages.
        project, sub_id = sub.name.split("/")[1], sub.name.split("/")[-1]
        message.attributes.update(
            {
                "CloudPubSubDeadLetterSourceDeliveryCount": str(delivery.attempts),
                "CloudPubSubDeadLetterSourceSubscription": sub_id,
                "CloudPubSubDeadLetterSourceSubscriptionProject": project,
                "CloudPubSubDeadLetterSourceTopicPublishTime": original.publish_time.ToJsonString(),
            }
        )
        self._publish_locked(topic, [message])
        return True

    # -- timers ------------------------------------------------------------------------------------
    def _add_timer(self, when: float, kind: str, sub: SubscriptionState, payload: object) -> None:
        earliest = not self._timers or when < self._timers[0][0]
        heapq.heappush(self._timers, (when, next(self._timer_seq), kind, sub, payload))
        if earliest:
            self._timer_cond.notify()

    def _run_timers(self) -> None:
        with self.lock:
            while not self.closed:
                now = time.monotonic()
                expire: set[int] = set()
                while self._timers and self._timers[0][0] <= now:
                    _, _, kind, sub, payload = heapq.heappop(self._timers)
                    if sub.deleted or sub.config.detached:
                        continue
                    if kind == "release":
                        assert isinstance(payload, Delivery)
                        sub.ready.appendleft(payload)
                        sub.cond.notify_all()  # type: ignore[union-attr]
                    elif id(sub) not in expire:
                        expire.add(id(sub))
                        self._expire(sub, now)
                timeout = self._timers[0][0] - now if self._timers else None
                self._timer_cond.wait(timeout)

    def _expire(self, sub: SubscriptionState, now: float) -> None:
        # Leases share one timer per batch, so scan the subscription's leases for all that are due.
        due = [lease for lease in sub.leases.values() if lease.deadline <= now]
        for lease in sorted(due, key=lambda lease: lease.delivery.seq, reverse=True):
            self._end_lease(sub, lease)
            self._retry(sub, lease.delivery)
