"""gRPC handlers of google.pubsub.v1.Publisher and google.pubsub.v1.Subscriber over the store.

Handlers are registered generically (no generated stubs needed): each method gets the raw protobuf
classes behind the proto-plus types of google-cloud-pubsub, which are much faster to (de)serialise.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.pubsub_v1 import types

from emulators.pubsub.errors import PubSubError, check_subscription, invalid
from emulators.pubsub.store import MAX_ACK_DEADLINE_S, Consumer, Lease, Store

log = logging.getLogger("emulators.pubsub")

# Messages per StreamingPull response and the longest a unary Pull waits for the first message.
MAX_STREAM_BATCH = 1000
PULL_WAIT_S = 5.0
STREAM_POLL_S = 1.0


def _pb(name: str) -> Any:
    return getattr(types, name).pb()


Empty = empty_pb2.Empty
ReceivedMessage = _pb("ReceivedMessage")
StreamingPullResponse = _pb("StreamingPullResponse")
SubscriptionProperties = StreamingPullResponse.SubscriptionProperties


def _received(leases: list[Lease], with_attempt: bool) -> list[Any]:
    return [
        ReceivedMessage(
            ack_id=lease.ack_id,
            message=lease.delivery.message,
            delivery_attempt=lease.delivery.attempts if with_attempt else 0,
        )
        for lease in leases
    ]


def _abort(context: grpc.ServicerContext, exc: PubSubError) -> None:
    context.abort(exc.code, exc.message)


def _unary(fn: Callable[[Any, grpc.ServicerContext], Any], request: str, response: Any) -> grpc.RpcMethodHandler:
    request_cls = _pb(request)

    def handler(req: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(req, context)
        except PubSubError as exc:
            _abort(context, exc)
        except Exception as exc:
            log.exception("internal error in %s", fn.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"emulator error: {type(exc).__name__}: {exc}")

    return grpc.unary_unary_rpc_method_handler(
        handler, request_deserializer=request_cls.FromString, response_serializer=response.SerializeToString
    )


def _unimplemented(method: str, response: Any, request: str) -> grpc.RpcMethodHandler:
    def handler(req: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not supported by the embedded Pub/Sub emulator.")

    return grpc.unary_unary_rpc_method_handler(
        handler, request_deserializer=_pb(request).FromString, response_serializer=response.SerializeToString
    )


class Publisher:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create_topic(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.store.create_topic(request)

    def update_topic(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.store.update_topic(request.topic, request.update_mask)

    def publish(self, request: Any, context: grpc.ServicerContext) -> Any:
        ids = self.store.publish(request.topic, request.messages)
        return _pb("PublishResponse")(message_ids=ids)

    def get_topic(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.store.get_topic(request.topic)

    def list_topics(self, request: Any, context: grpc.ServicerContext) -> Any:
        topics, token = self.store.list_topics(request.project, request.page_size, request.page_token)
        return _pb("ListTopicsResponse")(topics=topics, next_page_token=token)

    def list_topic_subscriptions(self, request: Any, context: grpc.ServicerContext) -> Any:
        names, token = self.store.list_topic_subscriptions(request.topic, request.page_size, request.page_token)
        return _pb("ListTopicSubscriptionsResponse")(subscriptions=names, next_page_token=token)

    def list_topic_snapshots(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.store.get_topic(request.topic)
        return _pb("ListTopicSnapshotsResponse")()

    def delete_topic(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.store.delete_topic(request.topic)
        return Empty()

    def detach_subscription(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.store.detach_subscription(request.subscription)
        return _pb("DetachSubscriptionResponse")()

    def handler(self) -> grpc.GenericRpcHandler:
        topic = _pb("Topic")
        return grpc.method_handlers_generic_handler(
            "google.pubsub.v1.Publisher",
            {
                "CreateTopic": _unary(self.create_topic, "Topic", topic),
                "UpdateTopic": _unary(self.update_topic, "UpdateTopicRequest", topic),
                "Publish": _unary(self.publish, "PublishRequest", _pb("PublishResponse")),
                "GetTopic": _unary(self.get_topic, "GetTopicRequest", topic),
                "ListTopics": _unary(self.list_topics, "ListTopicsRequest", _pb("ListTopicsResponse")),
                "ListTopicSubscriptions": _unary(
                    self.list_topic_subscriptions,
                    "ListTopicSubscriptionsRequest",
                    _pb("ListTopicSubscriptionsResponse"),
                ),
                "ListTopicSnapshots": _unary(
                    self.list_topic_snapshots, "ListTopicSnapshotsRequest", _pb("ListTopicSnapshotsResponse")
                ),
                "DeleteTopic": _unary(self.delete_topic, "DeleteTopicRequest", Empty),
                "DetachSubscription": _unary(
                    self.detach_subscription, "DetachSubscriptionRequest", _pb("DetachSubscriptionResponse")
                ),
            },
        )


class Subscriber:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create_subscription(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.store.create_subscription(request)

    def get_subscription(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.store.get_subscription(request.subscription)

    def update_subscription(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.store.update_subscription(request.subscription, request.update_mask)

    def list_subscriptions(self, request: Any, context: grpc.ServicerContext) -> Any:
        subs, token = self.store.list_subscriptions(request.project, request.page_size, request.page_token)
        return _pb("ListSubscriptionsResponse")(subscriptions=subs, next_page_token=token)

    def delete_subscription(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.store.delete_subscription(request.subscription)
        return Empty()

    def modify_push_config(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.store.modify_push_config(request.subscription, request.push_config)
        return Empty()

    def modify_ack_deadline(self, request: Any, context: grpc.ServicerContext) -> Any:
        check_subscription(request.subscription)
        self.store.modify_ack_deadline(request.subscription, request.ack_ids, request.ack_deadline_seconds)
        return Empty()

    def acknowledge(self, request: Any, context: grpc.ServicerContext) -> Any:
        check_subscription(request.subscription)
        self.store.acknowledge(request.subscription, request.ack_ids)
        return Empty()

    def pull(self, request: Any, context: grpc.ServicerContext) -> Any:
        state = self.store.subscription_state(request.subscription)
        if request.max_messages <= 0:
            raise invalid(f"max_messages must be positive, got {request.max_messages}.")
        wait = 0.0
        if not request.return_immediately:
            remaining = context.time_remaining()
            wait = PULL_WAIT_S if remaining is None else max(0.0, min(PULL_WAIT_S, remaining - 0.5))
        leases = self.store.take(request.subscription, request.max_messages, None, wait)
        return _pb("PullResponse")(received_messages=_received(leases, state.max_delivery_attempts > 0))

    def streaming_pull(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            first = next(requests)
        except StopIteration:
            return
        name = first.subscription
        try:
            state = self.store.subscription_state(name)
            deadline = first.stream_ack_deadline_seconds
            if not 10 <= deadline <= MAX_ACK_DEADLINE_S:
                raise invalid(
                    f"stream_ack_deadline_seconds must be between 10 and {MAX_ACK_DEADLINE_S}, got {deadline}."
                )
            consumer = Consumer(
                ack_deadline_s=deadline,
                max_messages=max(0, first.max_outstanding_messages),
                max_bytes=max(0, first.max_outstanding_bytes),
            )
            self._apply(name, first, consumer)
        except PubSubError as exc:
            _abort(context, exc)
            return
        context.add_callback(lambda: self.store.close_consumer(name, consumer))
        # Acks, modacks and deadline changes arrive on the same stream while messages go out.
        reader = threading.Thread(
            target=self._read, args=(name, requests, consumer), daemon=True, name="pubsub-stream-reader"
        )
        reader.start()
        properties = SubscriptionProperties(message_ordering_enabled=state.ordered)
        while True:
            try:
                leases = self.store.take(name, MAX_STREAM_BATCH, consumer, STREAM_POLL_S)
            except PubSubError as exc:
                _abort(context, exc)
                return
            if leases:
                with_attempt = state.max_delivery_attempts > 0
                yield StreamingPullResponse(
                    received_messages=_received(leases, with_attempt), subscription_properties=properties
                )
            elif consumer.closed or self.store.closed or not context.is_active():
                return

    def _read(self, name: str, requests: Iterator[Any], consumer: Consumer) -> None:
        try:
            for request in requests:
                self._apply(name, request, consumer)
        except PubSubError as exc:
            log.info("streaming pull on %s: %s", name, exc)
        except Exception:  # noqa: S110 - the stream was cancelled or broke; closing it below is all there is to do
            pass
        finally:
            self.store.close_consumer(name, consumer)

    def _apply(self, name: str, request: Any, consumer: Consumer) -> None:
        if request.stream_ack_deadline_seconds:
            consumer.ack_deadline_s = min(max(request.stream_ack_deadline_seconds, 10), MAX_ACK_DEADLINE_S)
        if request.ack_ids:
            self.store.acknowledge(name, request.ack_ids)
        if len(request.modify_deadline_ack_ids) != len(request.modify_deadline_seconds):
            raise invalid("modify_deadline_seconds and modify_deadline_ack_ids must have the same length.")
        by_deadline: dict[int, list[str]] = {}
        for ack_id, seconds in zip(request.modify_deadline_ack_ids, request.modify_deadline_seconds, strict=True):
            by_deadline.setdefault(seconds, []).append(ack_id)
        for seconds, ack_ids in by_deadline.items():
            self.store.modify_ack_deadline(name, ack_ids, seconds)

    def handler(self) -> grpc.GenericRpcHandler:
        sub = _pb("Subscription")
        snapshot = _pb("Snapshot")
        return grpc.method_handlers_generic_handler(
            "google.pubsub.v1.Subscriber",
            {
                "CreateSubscription": _unary(self.create_subscription, "Subscription", sub),
                "GetSubscription": _unary(self.get_subscription, "GetSubscriptionRequest", sub),
                "UpdateSubscription": _unary(self.update_subscription, "UpdateSubscriptionRequest", sub),
                "ListSubscriptions": _unary(
                    self.list_subscriptions, "ListSubscriptionsRequest", _pb("ListSubscriptionsResponse")
                ),
                "DeleteSubscription": _unary(self.delete_subscription, "DeleteSubscriptionRequest", Empty),
                "ModifyPushConfig": _unary(self.modify_push_config, "ModifyPushConfigRequest", Empty),
                "ModifyAckDeadline": _unary(self.modify_ack_deadline, "ModifyAckDeadlineRequest", Empty),
                "Acknowledge": _unary(self.acknowledge, "AcknowledgeRequest", Empty),
                "Pull": _unary(self.pull, "PullRequest", _pb("PullResponse")),
                "StreamingPull": grpc.stream_stream_rpc_method_handler(
                    self.streaming_pull,
                    request_deserializer=_pb("StreamingPullRequest").FromString,
                    response_serializer=StreamingPullResponse.SerializeToString,
                ),
                "GetSnapshot": _unimplemented("GetSnapshot", snapshot, "GetSnapshotRequest"),
                "ListSnapshots": _unary(
                    lambda req, ctx: _pb("ListSnapshotsResponse")(),
                    "ListSnapshotsRequest",
                    _pb("ListSnapshotsResponse"),
                ),
                "CreateSnapshot": _unimplemented("CreateSnapshot", snapshot, "CreateSnapshotRequest"),
                "UpdateSnapshot": _unimplemented("UpdateSnapshot", snapshot, "UpdateSnapshotRequest"),
                "DeleteSnapshot": _unimplemented("DeleteSnapshot", Empty, "DeleteSnapshotRequest"),
                "Seek": _unimplemented("Seek", _pb("SeekResponse"), "SeekRequest"),
            },
        )
