"""Finer behaviour of the embedded emulator, through the official client, on an in-process server.

``start_server`` is the in-process API (the conformance suite covers the subprocess); the clients still
talk gRPC over 127.0.0.1.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from google.api_core import exceptions
from google.cloud import pubsub_v1
from google.pubsub_v1 import types

from emulators.postgres import free_port
from emulators.pubsub.server import EmulatorServer, start_server


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    started = start_server("127.0.0.1", 0)
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = started.address
    yield started
    started.stop()
    if previous is None:
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)
    else:
        os.environ["PUBSUB_EMULATOR_HOST"] = previous


@pytest.fixture
def names(server: EmulatorServer) -> tuple[str, str, str]:
    """(project, topic, subscription) of this test's own."""
    tag = f"t{uuid.uuid4().hex[:10]}"
    return f"projects/{tag}", f"projects/{tag}/topics/{tag}", f"projects/{tag}/subscriptions/{tag}"


@pytest.fixture
def publisher(server: EmulatorServer) -> Iterator[pubsub_v1.PublisherClient]:
    client = pubsub_v1.PublisherClient()
    yield client
    client.stop()


@pytest.fixture
def subscriber(server: EmulatorServer) -> Iterator[pubsub_v1.SubscriberClient]:
    client = pubsub_v1.SubscriberClient()
    yield client
    client.close()


def pull(subscriber: pubsub_v1.SubscriberClient, sub: str, timeout_s: float = 2) -> list[types.ReceivedMessage]:
    return list(subscriber.pull(subscription=sub, max_messages=100, timeout=timeout_s).received_messages)


def pull_one(subscriber: pubsub_v1.SubscriberClient, sub: str, timeout_s: float = 30) -> types.ReceivedMessage:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        received = pull(subscriber, sub)
        if received:
            assert len(received) == 1, received
            return received[0]
    raise AssertionError(f"nothing delivered on {sub} within {timeout_s:g}s")


def test_in_process_server_reports_its_port(server: EmulatorServer) -> None:
    assert server.port > 0
    assert server.address == f"127.0.0.1:{server.port}"


def test_streaming_pull_honours_max_outstanding_messages_and_acks_on_the_stream(
    publisher: pubsub_v1.PublisherClient, subscriber: pubsub_v1.SubscriberClient, names: tuple[str, str, str]
) -> None:
    _, topic, sub = names
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=sub, topic=topic)
    for i in range(7):
        publisher.publish(topic, str(i).encode()).result(timeout=30)

    requests: queue.Queue[types.StreamingPullRequest | None] = queue.Queue()
    requests.put(
        types.StreamingPullRequest(subscription=sub, stream_ack_deadline_seconds=60, max_outstanding_messages=3)
    )

    def request_stream() -> Iterator[types.StreamingPullRequest]:
        while (request := requests.get()) is not None:
            yield request

    responses = subscriber.streaming_pull(requests=request_stream())
    seen: list[bytes] = []
    try:
        for response in responses:
            batch = list(response.received_messages)
            assert 1 <= len(batch) <= 3
            seen.extend(m.message.data for m in batch)
            if len(seen) >= 7:
                break
            # Nothing more comes until these are acked, here on the stream itself.
            requests.put(types.StreamingPullRequest(ack_ids=[m.ack_id for m in batch]))
    finally:
        requests.put(None)
        responses.cancel()  # type: ignore[attr-defined]
    assert sorted(seen) == [str(i).encode() for i in range(7)]


def test_a_retry_policy_delays_redelivery_of_a_nacked_pull_message(
    publisher: pubsub_v1.PublisherClient, subscriber: pubsub_v1.SubscriberClient, names: tuple[str, str, str]
) -> None:
    _, topic, sub = names
    publisher.create_topic(name=topic)
    subscriber.create_subscription(
        request={"name": sub, "topic": topic, "retry_policy": {"minimum_backoff": "5s", "maximum_backoff": "10s"}}
    )
    publisher.publish(topic, b"later").result(timeout=30)
    first = pull_one(subscriber, sub)
    subscriber.modify_ack_deadline(subscription=sub, ack_ids=[first.ack_id], ack_deadline_seconds=0)
    assert pull(subscriber, sub, timeout_s=1.5) == []  # backing off, not redelivered at once
    assert pull_one(subscriber, sub).message.data == b"later"


def test_a_pull_subscription_without_retry_policy_redelivers_a_nack_at_once(
    publisher: pubsub_v1.PublisherClient, subscriber: pubsub_v1.SubscriberClient, names: tuple[str, str, str]
) -> None:
    _, topic, sub = names
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=sub, topic=topic)
    publisher.publish(topic, b"again").result(timeout=30)
    first = pull_one(subscriber, sub)
    subscriber.modify_ack_deadline(subscription=sub, ack_ids=[first.ack_id], ack_deadline_seconds=0)
    again = pull_one(subscriber, sub)
    assert again.message.message_id == first.message.message_id
    # The old ack id no longer acks anything; the new one does.
    subscriber.acknowledge(subscription=sub, ack_ids=[first.ack_id])
    subscriber.acknowledge(subscription=sub, ack_ids=[again.ack_id])
    assert pull(subscriber, sub, timeout_s=1.5) == []


def test_turning_a_push_subscription_into_pull_stops_pushing(
    publisher: pubsub_v1.PublisherClient, subscriber: pubsub_v1.SubscriberClient, names: tuple[str, str, str]
) -> None:
    _, topic, sub = names
    publisher.create_topic(name=topic)
    dead_endpoint = f"http://127.0.0.1:{free_port()}/"  # nothing listens: every push fails
    subscriber.create_subscription(
        request={"name": sub, "topic": topic, "push_config": {"push_endpoint": dead_endpoint}}
    )
    publisher.publish(topic, b"kept").result(timeout=30)
    time.sleep(0.5)  # a few failed pushes
    subscriber.modify_push_config(subscription=sub, push_config={})
    assert pull_one(subscriber, sub).message.data == b"kept"  # not lost by the failed pushes


def test_a_subscription_outlives_its_deleted_topic_with_its_backlog(
    publisher: pubsub_v1.PublisherClient, subscriber: pubsub_v1.SubscriberClient, names: tuple[str, str, str]
) -> None:
    _, topic, sub = names
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=sub, topic=topic)
    publisher.publish(topic, b"backlog").result(timeout=30)
    publisher.delete_topic(topic=topic)
    assert subscriber.get_subscription(subscription=sub).topic == "_deleted-topic_"
    assert pull_one(subscriber, sub).message.data == b"backlog"


def test_a_detached_subscription_receives_nothing_more(
    publisher: pubsub_v1.PublisherClient, subscriber: pubsub_v1.SubscriberClient, names: tuple[str, str, str]
) -> None:
    _, topic, sub = names
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=sub, topic=topic)
    publisher.detach_subscription(request={"subscription": sub})
    publisher.publish(topic, b"unseen").result(timeout=30)
    assert subscriber.get_subscription(subscription=sub).detached
    assert sub not in list(publisher.list_topic_subscriptions(topic=topic))
    assert pull(subscriber, sub, timeout_s=1.5) == []


def test_without_its_dead_letter_topic_a_message_is_kept_not_lost(
    publisher: pubsub_v1.PublisherClient, subscriber: pubsub_v1.SubscriberClient, names: tuple[str, str, str]
) -> None:
    project, topic, sub = names
    publisher.create_topic(name=topic)
    subscriber.create_subscription(
        request={
            "name": sub,
            "topic": topic,
            "dead_letter_policy": {"dead_letter_topic": f"{project}/topics/never-created", "max_delivery_attempts": 5},
        }
    )
    publisher.publish(topic, b"stubborn").result(timeout=30)
    attempts = []
    for _ in range(6):
        received = pull_one(subscriber, sub)
        attempts.append(received.delivery_attempt)
        subscriber.modify_ack_deadline(subscription=sub, ack_ids=[received.ack_id], ack_deadline_seconds=0)
    assert attempts == [1, 2, 3, 4, 5, 6]


def test_topics_are_listed_across_pages(publisher: pubsub_v1.PublisherClient, names: tuple[str, str, str]) -> None:
    project, topic, _ = names
    created = sorted(f"{topic}-{i}" for i in range(5))
    for name in created:
        publisher.create_topic(name=name)
    pager = publisher.list_topics(request={"project": project, "page_size": 2})
    assert [t.name for t in pager] == created
    first_page = publisher.list_topics(request={"project": project, "page_size": 2}).pages
    assert len(next(iter(first_page)).topics) == 2


def test_concurrent_publishers_lose_nothing(
    publisher: pubsub_v1.PublisherClient, subscriber: pubsub_v1.SubscriberClient, names: tuple[str, str, str]
) -> None:
    _, topic, sub = names
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=sub, topic=topic)

    def publish_many(worker: int) -> None:
        for f in [publisher.publish(topic, f"{worker}-{i}".encode()) for i in range(100)]:
            f.result(timeout=30)

    threads = [threading.Thread(target=publish_many, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seen: set[bytes] = set()
    deadline = time.monotonic() + 60
    while len(seen) < 800 and time.monotonic() < deadline:
        received = pull(subscriber, sub)
        if received:
            subscriber.acknowledge(subscription=sub, ack_ids=[m.ack_id for m in received])
            seen.update(m.message.data for m in received)
    assert len(seen) == 800


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda p, s, n: p.publish(n[1], b"").result(timeout=30), "needs data or at least one attribute"),
        (
            lambda p, s, n: s.create_subscription(name=n[2], topic=n[1], ack_deadline_seconds=5),
            "ack_deadline_seconds must be between 10 and 600",
        ),
        (
            lambda p, s, n: s.create_subscription(
                request={
                    "name": n[2],
                    "topic": n[1],
                    "dead_letter_policy": {"dead_letter_topic": n[1], "max_delivery_attempts": 3},
                }
            ),
            "max_delivery_attempts must be between 5 and 100",
        ),
        (
            lambda p, s, n: s.create_subscription(
                request={"name": n[2], "topic": n[1], "push_config": {"push_endpoint": "ftp://x"}}
            ),
            "http:// or https:// URL",
        ),
        (
            lambda p, s, n: s.create_subscription(request={"name": n[2], "topic": n[1], "filter": "attributes:"}),
            "Invalid filter",
        ),
        (
            lambda p, s, n: (
                s.create_subscription(name=n[2], topic=n[1]),
                s.update_subscription(
                    subscription={"name": n[2], "filter": "attributes:x"}, update_mask={"paths": ["filter"]}
                ),
            ),
            "cannot be updated",
        ),
        (
            lambda p, s, n: (s.create_subscription(name=n[2], topic=n[1]), s.pull(subscription=n[2], max_messages=0)),
            "max_messages must be positive",
        ),
        (
            lambda p, s, n: (
                s.create_subscription(name=n[2], topic=n[1]),
                s.modify_ack_deadline(subscription=n[2], ack_ids=["x"], ack_deadline_seconds=601),
            ),
            "between 0 and 600",
        ),
        (lambda p, s, n: p.publish(n[1], b"x", googkey="v").result(timeout=30), "must not start with 'goog'"),
    ],
)
def test_bad_requests_are_invalid_argument_with_the_reason(
    call: object,
    reason: str,
    publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    names: tuple[str, str, str],
) -> None:
    publisher.create_topic(name=names[1])
    with pytest.raises(exceptions.InvalidArgument) as caught:
        call(publisher, subscriber, names)  # type: ignore[operator]
    assert reason in str(caught.value)
