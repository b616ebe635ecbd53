"""Conformance of the Pub/Sub emulator, written against the official google-cloud-pubsub client only.

The emulator runs as a real subprocess (``pubsub_emulator_host``, parametrized embedded / official); the
clients find it through PUBSUB_EMULATOR_HOST exactly as the services do.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google.api_core import exceptions
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber.futures import StreamingPullFuture
from google.cloud.pubsub_v1.subscriber.message import Message
from google.pubsub_v1 import types

from tests.fixtures.pubsub import PubSubEmulator, PubSubNames

WAIT_S = 60.0


@pytest.fixture
def publisher(pubsub_emulator_host: str) -> Iterator[pubsub_v1.PublisherClient]:
    client = pubsub_v1.PublisherClient()
    yield client
    client.stop()


@pytest.fixture
def ordered_publisher(pubsub_emulator_host: str) -> Iterator[pubsub_v1.PublisherClient]:
    client = pubsub_v1.PublisherClient(publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True))
    yield client
    client.stop()


@pytest.fixture
def subscriber(pubsub_emulator_host: str) -> Iterator[pubsub_v1.SubscriberClient]:
    client = pubsub_v1.SubscriberClient()
    yield client
    client.close()


class Inbox:
    """Messages a streaming-pull callback received; ``wait(pred)`` blocks until ``pred(messages)`` holds."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.cond = threading.Condition()

    def add(self, message: Message) -> None:
        with self.cond:
            self.messages.append(message)
            self.cond.notify_all()

    def wait(self, predicate: Callable[[list[Message]], bool], what: str, timeout_s: float = WAIT_S) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: predicate(self.messages), timeout_s):
                raise AssertionError(f"{what}: not reached within {timeout_s:g}s; got {len(self.messages)} messages")


def subscribe(
    subscriber: pubsub_v1.SubscriberClient,
    subscription: str,
    inbox: Inbox,
    handle: Callable[[Message], None] = lambda m: m.ack(),
) -> StreamingPullFuture:
    def callback(message: Message) -> None:
        inbox.add(message)
        handle(message)

    return subscriber.subscribe(subscription, callback)


def stop(future: StreamingPullFuture) -> None:
    future.cancel()
    try:
        future.result(timeout=30)
    except Exception:  # noqa: S110 - a cancelled stream ends with CancelledError or the server's error
        pass


def pull_all(
    subscriber: pubsub_v1.SubscriberClient,
    subscription: str,
    expected: int,
    timeout_s: float = WAIT_S,
    ack: bool = True,
) -> list[types.ReceivedMessage]:
    """Unary pulls until ``expected`` messages came (acking them unless told not to)."""
    received: list[types.ReceivedMessage] = []
    deadline = time.monotonic() + timeout_s
    while len(received) < expected:
        assert time.monotonic() < deadline, f"only {len(received)} of {expected} messages within {timeout_s:g}s"
        response = subscriber.pull(subscription=subscription, max_messages=100, timeout=5)
        received.extend(response.received_messages)
        if ack and response.received_messages:
            subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages])
    return received


def embedded_only(emulator: PubSubEmulator, deviation: str) -> None:
    """Skip where gcloud's emulator is known to behave differently from the service (seen with 0.8.20)."""
    if emulator.kind == "official":
        pytest.skip(f"gcloud's Pub/Sub emulator deviates here: {deviation}")


def pull_nothing(subscriber: pubsub_v1.SubscriberClient, subscription: str, rounds: int = 2) -> None:
    for _ in range(rounds):
        response = subscriber.pull(subscription=subscription, max_messages=100, timeout=2)
        assert not response.received_messages, [m.message for m in response.received_messages]


def test_publish_subscribe_round_trip(
    publisher: pubsub_v1.PublisherClient, subscriber: pubsub_v1.SubscriberClient, pubsub_names: PubSubNames
) -> None:
    topic, sub = pubsub_names.topic("round"), pubsub_names.subscription("round")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=sub, topic=topic)
    payload = bytes(range(256)) * 4  # binary data survives as is
    message_id = publisher.publish(topic, payload, kind="greeting", lang="en").result(timeout=30)

    inbox = Inbox()
    future = subscribe(subscriber, sub, inbox)
    try:
        inbox.wait(lambda ms: len(ms) >= 1, "one message")
    finally:
        stop(future)
    message = inbox.messages[0]
    assert message.data == payload
    assert dict(message.attributes) == {"kind": "greeting", "lang": "en"}
    assert message.message_id == message_id
    assert abs(message.publish_time.timestamp() - time.time()) < 600  # a real publish time, not zero
    assert message.delivery_attempt is None  # only reported with a dead-letter policy
    pull_nothing(subscriber, sub, rounds=1)  # acked: not delivered again


def test_admin_operations_and_errors(
    publisher: pubsub_v1.PublisherClient, subscriber: pubsub_v1.SubscriberClient, pubsub_names: PubSubNames
) -> None:
    topic, sub = pubsub_names.topic("admin"), pubsub_names.subscription("admin")
    assert publisher.create_topic(name=topic).name == topic
    with pytest.raises(exceptions.AlreadyExists):
        publisher.create_topic(name=topic)
    assert publisher.get_topic(topic=topic).name == topic
    assert topic in [t.name for t in publisher.list_topics(project=f"projects/{pubsub_names.project}")]

    created = subscriber.create_subscription(name=sub, topic=topic, ack_deadline_seconds=20)
    assert created.ack_deadline_seconds == 20
    with pytest.raises(exceptions.AlreadyExists):
        subscriber.create_subscription(name=sub, topic=topic)
    assert sub in list(publisher.list_topic_subscriptions(topic=topic))
    assert sub in [s.name for s in subscriber.list_subscriptions(project=f"projects/{pubsub_names.project}")]
    updated = subscriber.update_subscription(
        subscription={"name": sub, "ack_deadline_seconds": 45}, update_mask={"paths": ["ack_deadline_seconds"]}
    )
    assert updated.ack_deadline_seconds == 45
    assert subscriber.get_subscription(subscription=sub).ack_deadline_seconds == 45

    with pytest.raises(exceptions.NotFound):
        publisher.get_topic(topic=pubsub_names.topic("missing"))
    with pytest.raises(exceptions.NotFound):
        publisher.publish(pubsub_names.topic("missing"), b"x").result(timeout=30)
    with pytest.raises(exceptions.NotFound):
        subscriber.create_subscription(name=pubsub_names.subscription("orphan"), topic=pubsub_names.topic("missing"))
    with pytest.raises(exceptions.InvalidArgument):
        publisher.create_topic(name=f"projects/{pubsub_names.project}/topics/no spaces allowed")

    subscriber.delete_subscription(subscription=sub)
    with pytest.raises(exceptions.NotFound):
        subscriber.get_subscription(subscription=sub)
    publisher.delete_topic(topic=topic)
    with pytest.raises(exceptions.NotFound):
        publisher.get_topic(topic=topic)


def test_messages_published_before_the_subscription_are_not_delivered(
    publisher: pubsub_v1.PublisherClient, subscriber: pubsub_v1.SubscriberClient, pubsub_names: PubSubNames
) -> None:
    topic, sub = pubsub_names.topic("late"), pubsub_names.subscription("late")
    publisher.create_topic(name=topic)
    publisher.publish(topic, b"before").result(timeout=30)
    subscriber.create_subscription(name=sub, topic=topic)
    publisher.publish(topic, b"after").result(timeout=30)

    received = pull_all(subscriber, sub, 1)
    assert [m.message.data for m in received] == [b"after"]
    pull_nothing(subscriber, sub, rounds=1)


def test_1000_messages_over_10_ordering_keys_arrive_in_order(
    ordered_publisher: pubsub_v1.PublisherClient, subscriber: pubsub_v1.SubscriberClient, pubsub_names: PubSubNames
) -> None:
    topic, sub = pubsub_names.topic("ordered"), pubsub_names.subscription("ordered")
    ordered_publisher.create_topic(name=topic)
    subscriber.create_subscription(request={"name": sub, "topic": topic, "enable_message_ordering": True})
    futures = [
        ordered_publisher.publish(topic, str(i // 10).encode(), ordering_key=f"key-{i % 10}") for i in range(1000)
    ]
    for f in futures:
        f.result(timeout=60)

    inbox = Inbox()
    future = subscribe(subscriber, sub, inbox)
    try:
        inbox.wait(lambda ms: len(ms) >= 1000, "1000 ordered messages")
    finally:
        stop(future)
    per_key: dict[str, list[int]] = defaultdict(list)
    for message in inbox.messages:
        per_key[message.ordering_key].append(int(message.data))
    assert sorted(per_key) == [f"key-{k}" for k in range(10)]
    for key, sequence in per_key.items():
        assert sequence == list(range(100)), f"{key} out of order: {sequence}"


def test_a_nacked_ordered_message_is_redelivered_before_the_next_of_its_key(
    ordered_publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    pubsub_names: PubSubNames,
    pubsub_emulator: PubSubEmulator,
) -> None:
    embedded_only(pubsub_emulator, "a nacked ordered message was not redelivered before the next ones of its key")
    topic, sub = pubsub_names.topic("ordnack"), pubsub_names.subscription("ordnack")
    ordered_publisher.create_topic(name=topic)
    subscriber.create_subscription(request={"name": sub, "topic": topic, "enable_message_ordering": True})
    for i in range(5):
        ordered_publisher.publish(topic, str(i).encode(), ordering_key="only").result(timeout=30)
    nacked: set[bytes] = set()

    def nack_each_once(message: Message) -> None:
        if message.data in (b"0", b"2") and message.data not in nacked:
            nacked.add(message.data)
            message.nack()
        else:
            message.ack()

    inbox = Inbox()
    future = subscribe(subscriber, sub, inbox, nack_each_once)
    try:
        inbox.wait(lambda ms: [m.data for m in ms].count(b"4") >= 1, "the last message")
    finally:
        stop(future)
    assert [m.data for m in inbox.messages] == [b"0", b"0", b"1", b"2", b"2", b"3", b"4"]


def test_an_unacked_message_is_redelivered_after_its_deadline(
    publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    pubsub_names: PubSubNames,
    pubsub_emulator: PubSubEmulator,
) -> None:
    """A consumer that dies holding a message (stream gone, no ack) does not lose it: it comes back."""
    embedded_only(pubsub_emulator, "a message held by a closed stream was not redelivered within 60 s")
    topic, sub = pubsub_names.topic("deadline"), pubsub_names.subscription("deadline")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=sub, topic=topic, ack_deadline_seconds=10)
    message_id = publisher.publish(topic, b"work").result(timeout=30)

    # A streaming consumer takes it and stops without acking (a crashed worker).
    first = Inbox()
    future = subscribe(subscriber, sub, first, handle=lambda m: None)
    first.wait(lambda ms: len(ms) == 1, "first delivery")
    stop(future)

    # Nobody extends its lease any more, so after the deadline another consumer gets it.
    second = Inbox()
    future = subscribe(subscriber, sub, second)
    try:
        second.wait(lambda ms: len(ms) == 1, "redelivery after the ack deadline")
    finally:
        stop(future)
    assert second.messages[0].message_id == message_id
    assert second.messages[0].ack_id != first.messages[0].ack_id


def test_a_shortened_deadline_expires_and_the_message_comes_back(
    publisher: pubsub_v1.PublisherClient, subscriber: pubsub_v1.SubscriberClient, pubsub_names: PubSubNames
) -> None:
    topic, sub = pubsub_names.topic("modack"), pubsub_names.subscription("modack")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=sub, topic=topic, ack_deadline_seconds=600)
    publisher.publish(topic, b"short").result(timeout=30)

    first = pull_all(subscriber, sub, 1, ack=False)[0]
    subscriber.modify_ack_deadline(subscription=sub, ack_ids=[first.ack_id], ack_deadline_seconds=1)
    again = pull_all(subscriber, sub, 1, timeout_s=30)[0]
    assert again.message.message_id == first.message.message_id
    assert again.message.data == b"short"


def test_a_message_nacked_5_times_lands_on_the_dead_letter_topic(
    publisher: pubsub_v1.PublisherClient, subscriber: pubsub_v1.SubscriberClient, pubsub_names: PubSubNames
) -> None:
    topic, dlq = pubsub_names.topic("work"), pubsub_names.topic("work-dlq")
    sub, dlq_sub = pubsub_names.subscription("work"), pubsub_names.subscription("work-dlq")
    publisher.create_topic(name=topic)
    publisher.create_topic(name=dlq)
    subscriber.create_subscription(name=dlq_sub, topic=dlq)
    subscriber.create_subscription(
        request={
            "name": sub,
            "topic": topic,
            "dead_letter_policy": {"dead_letter_topic": dlq, "max_delivery_attempts": 5},
        }
    )
    message_id = publisher.publish(topic, b"poison", run_id="r-42").result(timeout=30)

    inbox = Inbox()
    future = subscribe(subscriber, sub, inbox, handle=lambda m: m.nack())
    try:
        dead = pull_all(subscriber, dlq_sub, 1)
    finally:
        stop(future)
    assert [m.message_id for m in inbox.messages] == [message_id] * 5
    assert [m.delivery_attempt for m in inbox.messages] == [1, 2, 3, 4, 5]
    letter = dead[0].message
    assert letter.data == b"poison"
    assert letter.attributes["run_id"] == "r-42"
    assert letter.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    pull_nothing(subscriber, sub, rounds=1)  # gone from the source subscription


def test_a_filtered_subscription_receives_only_matching_messages(
    publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    pubsub_names: PubSubNames,
    pubsub_emulator: PubSubEmulator,
) -> None:
    embedded_only(pubsub_emulator, "it accepts subscription filters but delivers every message")
    topic, sub = pubsub_names.topic("filtered"), pubsub_names.subscription("filtered")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(
        request={
            "name": sub,
            "topic": topic,
            "filter": '(attributes.kind = "order" OR hasPrefix(attributes.kind, "pay")) AND NOT attributes:test',
        }
    )
    cases = [
        ({"kind": "order"}, True),
        ({"kind": "payment"}, True),
        ({"kind": "payout", "region": "eu"}, True),
        ({"kind": "order", "test": "1"}, False),
        ({"kind": "refund"}, False),
        ({"other": "order"}, False),
        ({"kind": "Order"}, False),  # values are case-sensitive
    ]
    wanted = []
    for i, (attributes, matches) in enumerate(cases):
        message_id = publisher.publish(topic, f"m{i}".encode(), **attributes).result(timeout=30)
        if matches:
            wanted.append(message_id)

    received = pull_all(subscriber, sub, len(wanted))
    pull_nothing(subscriber, sub, rounds=1)
    assert sorted(m.message.message_id for m in received) == sorted(wanted)

    with pytest.raises(exceptions.InvalidArgument):
        subscriber.create_subscription(
            request={
                "name": pubsub_names.subscription("badfilter"),
                "topic": topic,
                "filter": "attributes.kind = order",
            }
        )


def test_deleting_a_subscription_stops_its_deliveries(
    publisher: pubsub_v1.PublisherClient, subscriber: pubsub_v1.SubscriberClient, pubsub_names: PubSubNames
) -> None:
    topic, sub, other = pubsub_names.topic("del"), pubsub_names.subscription("del"), pubsub_names.subscription("kept")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=sub, topic=topic)
    subscriber.create_subscription(name=other, topic=topic)
    inbox = Inbox()
    future = subscribe(subscriber, sub, inbox)
    try:
        publisher.publish(topic, b"one").result(timeout=30)
        inbox.wait(lambda ms: len(ms) == 1, "first message")
        subscriber.delete_subscription(subscription=sub)
        publisher.publish(topic, b"two").result(timeout=30)
        # The other subscription gets both; the deleted one's stream gets nothing more.
        assert sorted(m.message.data for m in pull_all(subscriber, other, 2)) == [b"one", b"two"]
    finally:
        stop(future)
    assert [m.data for m in inbox.messages] == [b"one"]


def wait_for_lines(path: Path, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + WAIT_S
    while not (path.exists() and len(path.read_text().splitlines()) >= count):
        assert time.monotonic() < deadline, f"push calls seen: {path.read_text() if path.exists() else 'none'}"
        time.sleep(0.05)
    time.sleep(1.0)  # acked messages must not be pushed again: give a wrong extra call the chance to show
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_push_delivery_reaches_a_cloudevent_function_and_is_retried_on_500(
    publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    pubsub_names: PubSubNames,
    start_function: Callable[..., tuple[object, str]],
    tmp_path: Path,
) -> None:
    counter, record = tmp_path / "calls", tmp_path / "events.jsonl"
    _, url = start_function(
        "tests/emulators/pubsub_push_target.py",
        "receive",
        signature="cloudevent",
        wait_path="/",
        env={"PUSH_COUNTER_FILE": str(counter), "PUSH_RECORD_FILE": str(record), "PUSH_FAIL_FIRST": "2"},
    )
    topic, sub = pubsub_names.topic("pushed"), pubsub_names.subscription("pushed")
    topic_id = topic.rsplit("/", 1)[1]
    publisher.create_topic(name=topic)
    # The topic in the URL path lets functions-framework name the CloudEvent's source, as Eventarc's URLs do.
    endpoint = f"{url}/projects/{pubsub_names.project}/topics/{topic_id}"
    subscriber.create_subscription(request={"name": sub, "topic": topic, "push_config": {"push_endpoint": endpoint}})
    message_id = publisher.publish(topic, b'{"run": 7}', origin="test").result(timeout=30)

    calls = wait_for_lines(record, 3)
    assert [c["attempt"] for c in calls] == [1, 2, 3]
    event = calls[-1]
    # functions-framework turned the raw push body into a Pub/Sub CloudEvent.
    assert event["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert event["source"] == f"//pubsub.googleapis.com/projects/{pubsub_names.project}/topics/{topic_id}"
    assert event["id"] == message_id
    message = event["data"]["message"]
    assert base64.b64decode(message["data"]) == b'{"run": 7}'
    assert message["attributes"] == {"origin": "test"}
    assert message["messageId"] == message_id
    assert message["publishTime"]


def test_push_respects_ordering_keys_and_retries_the_failed_message_first(
    ordered_publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    pubsub_names: PubSubNames,
    start_function: Callable[..., tuple[object, str]],
    tmp_path: Path,
) -> None:
    counter, record = tmp_path / "calls", tmp_path / "events.jsonl"
    _, url = start_function(
        "tests/emulators/pubsub_push_target.py",
        "receive",
        signature="cloudevent",
        wait_path="/",
        env={"PUSH_COUNTER_FILE": str(counter), "PUSH_RECORD_FILE": str(record), "PUSH_FAIL_FIRST": "1"},
    )
    topic, sub = pubsub_names.topic("pushord"), pubsub_names.subscription("pushord")
    ordered_publisher.create_topic(name=topic)
    subscriber.create_subscription(
        request={
            "name": sub,
            "topic": topic,
            "enable_message_ordering": True,
            "push_config": {"push_endpoint": url + "/"},
        }
    )
    futures = [
        ordered_publisher.publish(topic, f"{key}:{i}".encode(), ordering_key=key)
        for i in range(10)
        for key in ("a", "b")
    ]
    for f in futures:
        f.result(timeout=30)

    calls = wait_for_lines(record, 21)
    assert len(calls) == 21  # 20 messages, the first call failed once
    per_key: dict[str, list[int]] = defaultdict(list)
    for call in calls:
        key, seq = base64.b64decode(call["data"]["message"]["data"]).decode().split(":")  # type: ignore[index]
        per_key[key].append(int(seq))
    failed_key = base64.b64decode(calls[0]["data"]["message"]["data"]).decode().split(":")[0]  # type: ignore[index]
    for key, sequence in per_key.items():
        expected = [0, *range(10)] if key == failed_key else list(range(10))
        assert sequence == expected, f"key {key}: {sequence}"
