"""Embedded Pub/Sub emulator: a gRPC server the unmodified google-cloud-pubsub client talks to.

Run it with ``python -m emulators.pubsub --host 127.0.0.1 --port 0`` (prints ``{"ready": true, "host": ...,
"port": N}``) or in-process with ``emulators.pubsub.server.start_server(host, port)``; point clients at it
with ``PUBSUB_EMULATOR_HOST=host:port``. Any project id works. State lives in memory for the life of
the process.

Supported
- Topics: create, get, update (labels and other settable fields), list (paged), list subscriptions,
  delete (its subscriptions stay, pointing at ``_deleted-topic_``), detach subscription.
- Subscriptions: create, get, update (ack deadline, push config, labels, retry and dead-letter
  policies, ...; not filter or ordering, as in the real service), list (paged), delete, ModifyPushConfig.
  ``expiration_policy``, ``message_retention_duration``, labels and the like are stored and ignored.
- Publish: message ids, publish_time, attributes, ordering keys, the real service's size limits.
  A subscription receives only messages published after it was created.
- Pull and StreamingPull (the client's default): ``stream_ack_deadline_seconds``, acks and modacks on the
  stream or by unary Acknowledge / ModifyAckDeadline (0 = nack, redelivered at once), per-stream
  ``max_outstanding_messages`` / ``max_outstanding_bytes``, ack deadlines with redelivery on expiry.
- Message ordering (``enable_message_ordering``): in order per key; the next message of a key is held
  until the previous one is acked; a nacked or expired one is redelivered first.
- Filters on attributes: ``attributes.k = "v"``, ``!=``, ``hasPrefix(attributes.k, "p")``, ``attributes:k``,
  NOT, AND, OR, parentheses (mixing AND and OR needs parentheses); non-matching messages are dropped.
- Dead-letter policy: ``delivery_attempt`` is reported; after ``max_delivery_attempts`` the message is
  republished to the dead-letter topic with its attributes plus the real service's
  ``CloudPubSubDeadLetterSource*`` attributes (delivery count, subscription, project, publish time).
- Retry policy: exponential backoff between redeliveries, minimum_backoff doubling up to maximum_backoff
  (an unset bound means 100 ms / 10 s); pull subscriptions without a retry policy redeliver at once.
- Push (``push_config.push_endpoint``): POSTs the standard wrapper JSON (``message`` with data, attributes,
  messageId/message_id, publishTime/publish_time, orderingKey; ``subscription``; ``deliveryAttempt``
  when a dead-letter policy is set); 2xx acks, anything else or a timeout (the ack deadline) nacks with
  backoff (100 ms doubling to 10 s, or the retry policy); at most 64 messages in flight per subscription;
  ordering keys are respected.

Not supported
- Snapshots and Seek (UNIMPLEMENTED; listing snapshots returns nothing), schemas, exactly-once delivery
  (accepted, not enforced, never reported to the client), ``retain_acked_messages``, message retention
  limits, subscription expiry, push ``no_wrapper`` (rejected), push authentication (OIDC tokens are
  ignored), BigQuery / Cloud Storage subscriptions, IAM methods, persistence across restarts.
"""
