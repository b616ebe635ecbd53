"""POST /api/agent/message: store the user's message, create a run, queue it on ``agent-requests``.

Pub/Sub down at post time: the publish happens inside the database transaction that stores the message
and the run, and the transaction commits only once Pub/Sub has accepted the request. If Pub/Sub does not
accept it within PUBLISH_TIMEOUT_S the transaction rolls back and the caller gets 503 ``pubsub_unavailable``
with Retry-After: nothing half-written, and retrying with the same ``client_message_id`` is safe.
"""

from __future__ import annotations

import logging
from typing import Any

from functions.agent import plans
from functions.agent.api.schemas import MessageIn
from functions.agent.context import AgentContext
from functions.agent.store import threads as thread_store
from shared.errors import ApiError, ServiceUnavailable, not_found
from shared.http import Ctx, Router
from shared.models.events import AgentRequest

log = logging.getLogger("agent.api")


class _Replay(Exception):
    """The client_message_id was taken by a concurrent request that committed first."""


def _existing(db: Any, user_id: str, client_message_id: str) -> dict[str, Any] | None:
    return db.one(
        """SELECT m.id::text AS message_id, m.thread_id::text AS thread_id, m.content,
                  r.id::text AS run_id, r.status
             FROM messages m LEFT JOIN runs r ON r.message_id = m.id
            WHERE m.user_id = %s AND m.client_message_id = %s AND m.role = 'user'""",
        [user_id, client_message_id],
    )


def _replay(row: dict[str, Any], content: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    if row["content"] != content:
        raise ApiError(409, "client_message_id_conflict", "client_message_id was already used for a different message")
    return (
        {
            "run_id": row["run_id"],
            "thread_id": row["thread_id"],
            "message_id": row["message_id"],
            "status": row["status"],
            "replayed": True,
        },
        202,
        {"Idempotent-Replay": "true"},
    )


def _title(content: str) -> str:
    line = " ".join(content.split())
    return line[:60] + ("…" if len(line) > 60 else "")


def register(router: Router, deps: AgentContext) -> None:
    settings = deps.settings

    @router.route("POST", "/api/agent/message")
    def post_message(ctx: Ctx) -> Any:
        from functions.agent import pubsub

        user = deps.current_user(ctx)
        body = ctx.json(MessageIn)
        db = deps.db
        deps.manager.require("pubsub", settings.startup_wait_seconds)
        if body.client_message_id:
            row = _existing(db, user["id"], body.client_message_id)
            if row is not None:
                return _replay(row, body.content)
        # Plan limits (functions/agent/plans.py): the rate before any lock, the caps under the user's row lock.
        plans.check_run_rate(deps.limiter, settings, user["id"], plans.plan_of(db, user["id"]))
        try:
            with db.transaction() as tx:
                plans.check_run_caps(tx, settings, user["id"])
                if body.thread_id is not None:
                    thread = thread_store.get_thread(tx, user["id"], str(body.thread_id))
                    if thread is None:
                        raise not_found("thread")
                    thread_id = thread["id"]
                else:
                    thread_id = thread_store.create_thread(tx, user["id"], _title(body.content), {})["id"]
                message_id = tx.scalar(
                    """INSERT INTO messages (thread_id, user_id, role, content, client_message_id)
                       VALUES (%s, %s, 'user', %s, %s)
                       ON CONFLICT (user_id, client_message_id) WHERE client_message_id IS NOT NULL DO NOTHING
                       RETURNING id::text""",
                    [thread_id, user["id"], body.content, body.client_message_id],
                )
                if message_id is None:
                    raise _Replay
                run_id = tx.scalar(
                    "INSERT INTO runs (thread_id, user_id, message_id) VALUES (%s, %s, %s) RETURNING id::text",
                    [thread_id, user["id"], message_id],
                )
                tx.execute("UPDATE messages SET run_id = %s WHERE id = %s", [run_id, message_id])
                tx.execute("UPDATE threads SET updated_at = now() WHERE id = %s", [thread_id])
                request = AgentRequest(run_id=run_id, thread_id=thread_id, user_id=user["id"], message_id=message_id)
                try:
                    pubsub.publish_request(settings.google_cloud_project, request, settings.publish_timeout_s)
                except pubsub.PublishFailed as exc:
                    log.warning(
                        "run not queued: Pub/Sub unavailable; transaction rolled back", extra={"reason": str(exc)}
                    )
                    retry = max(2, round(pubsub.request_breaker.retry_after()))
                    raise ServiceUnavailable(
                        "the run could not be queued because Pub/Sub is unavailable; nothing was stored. "
                        "Retry later (the same client_message_id is safe to reuse).",
                        retry_after=retry,
                        code="pubsub_unavailable",
                    ) from None
        except _Replay:
            row = _existing(db, user["id"], body.client_message_id or "")
            if row is None:  # the other request rolled back in between: let the client retry
                raise ServiceUnavailable(
                    "a concurrent request with this client_message_id is in progress",
                    retry_after=1,
                    code="concurrent_request",
                ) from None
            return _replay(row, body.content)
        return {"run_id": run_id, "thread_id": thread_id, "message_id": message_id, "status": "queued"}, 202
