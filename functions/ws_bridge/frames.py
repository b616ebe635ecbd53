"""Client frames: validation, limits, and what each frame does."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from functions.ws_bridge import peers
from functions.ws_bridge.context import BridgeContext
from functions.ws_bridge.hub import Connection, Subscription, send_error
from functions.ws_bridge.limits import TokenBucket
from functions.ws_bridge.replay import replay
from shared.models.ws import Chat, ClientFrame, Subscribe
from shared.service import require_database
from shared.tokens.verify import KeySetUnavailable, TokenInvalid

log = logging.getLogger("ws_bridge.frames")
frames: TypeAdapter[Any] = TypeAdapter(ClientFrame)
MAX_PENDING = 8  # subscribe/chat frames being worked on at once per connection


def _validation_code(exc: ValidationError) -> tuple[str, str]:
    first = exc.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"])
    if first["type"] == "json_invalid":
        return "invalid_json", f"the frame is not JSON: {first['msg']}"
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return "unknown_frame", "type must be one of subscribe, unsubscribe, chat, ping, auth"
    if not where:
        return "invalid_frame", "a frame is a JSON object with a type"
    return "invalid_frame", f"{where}: {first['msg']}"


async def handle(bridge: BridgeContext, conn: Connection, text: str) -> None:
    settings = bridge.settings
    if len(text) > settings.max_frame_bytes or len(text.encode()) > settings.max_frame_bytes:
        send_error(conn, "frame_too_large", f"frames are limited to {settings.max_frame_bytes} bytes")
        return
    if conn.bucket is None:
        conn.bucket = TokenBucket(settings.max_frames_per_minute)
    if not conn.bucket.take():
        send_error(conn, "rate_limited", f"at most {settings.max_frames_per_minute} frames per minute")
        return
    try:
        frame = frames.validate_json(text)
    except ValidationError as exc:
        code, message = _validation_code(exc)
        send_error(conn, code, message)
        return
    if frame.type == "ping":
        conn.send_json({"type": "pong", "server_time": datetime.now(UTC).isoformat()})
    elif frame.type == "unsubscribe":
        conn.subscriptions.pop(frame.thread_id, None)
        conn.send_json({"type": "unsubscribed", "thread_id": frame.thread_id})
    elif frame.type == "auth":
        await extend(bridge, conn, frame.token)
    elif len(conn.tasks or ()) >= MAX_PENDING:
        send_error(conn, "too_many_pending", f"at most {MAX_PENDING} subscribe/chat frames in progress at once")
    elif frame.type == "subscribe":
        conn.spawn(subscribe(bridge, conn, frame))
    elif frame.type == "chat":
        conn.spawn(chat(bridge, conn, frame))


async def extend(bridge: BridgeContext, conn: Connection, token: str) -> None:
    try:
        claims = await asyncio.to_thread(bridge.verifier.verify, token)
    except TokenInvalid as exc:
        send_error(conn, "invalid_token", f"token refused: {exc.reason}")
        return
    except KeySetUnavailable:
        send_error(conn, "auth_unavailable", "token keys unavailable; retry shortly")
        return
    if claims.sub != conn.user_id:
        send_error(conn, "invalid_token", "the token belongs to another user")
        return
    conn.token, conn.expires_at = token, float(claims.exp)
    conn.send_json({"type": "auth_ok", "expires_at": claims.exp})


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
        return True
    except ValueError:
        return False


async def owns_thread(bridge: BridgeContext, user_id: str, thread_id: str) -> bool:
    """Ownership is checked in Postgres (threads.user_id), the system of record for threads."""
    if not _is_uuid(thread_id):
        return False
    # The connection only got here once the instance was ready, schema check included: the connection alone.
    db = await asyncio.to_thread(require_database, bridge.manager, 5.0, schema=False)
    row = await asyncio.to_thread(
        db.one, "SELECT 1 AS ok FROM threads WHERE id = %s::uuid AND user_id = %s::uuid", (thread_id, user_id)
    )
    return row is not None


async def subscribe(bridge: BridgeContext, conn: Connection, frame: Subscribe, check_owner: bool = True) -> None:
    thread_id = frame.thread_id
    if check_owner:
        try:
            owned = await owns_thread(bridge, conn.user_id, thread_id)
        except Exception as exc:  # ServiceUnavailable while the database is away, or a query error
            log.warning("ownership check failed", extra={"reason": type(exc).__name__})
            send_error(conn, "unavailable", "threads cannot be checked right now; retry the subscribe shortly")
            return
        if not owned:
            send_error(conn, "thread_not_found", f"thread {thread_id} not found")
            return
    sub = Subscription.start(
        thread_id,
        bridge.hub.buffer_limit,
        frame.run_id,
        frame.after_seq,
        ack={"type": "subscribed", "thread_id": thread_id},
    )
    conn.subscriptions[thread_id] = sub  # live events are buffered from here on
    await replay(conn, sub, bridge.settings.replay_page_size)


async def chat(bridge: BridgeContext, conn: Connection, frame: Chat) -> None:
    """The same as POST /api/agent/message, made with the user's own token; then follows the run."""
    if conn.token is None:
        send_error(
            conn,
            "chat_requires_token",
            "this connection was opened with a ticket: send an `auth` frame with an access token first",
            frame.client_message_id,
        )
        return
    body: dict[str, Any] = {"content": frame.content, "client_message_id": frame.client_message_id}
    if frame.thread_id:
        body["thread_id"] = frame.thread_id
    try:
        base = await peers.url("agent-api", bridge.settings.agent_api_url)
        response = await peers.client().post(
            f"{base}/api/agent/message", json=body, headers={"Authorization": f"Bearer {conn.token}"}
        )
    except Exception as exc:
        send_error(
            conn,
            "agent_unavailable",
            f"the agent API is unreachable ({type(exc).__name__}); retry with the same client_message_id",
            frame.client_message_id,
        )
        return
    try:
        payload = response.json()
    except ValueError:
        payload = {}
    if response.status_code >= 400:
        error = payload.get("error", {}) if isinstance(payload, dict) else {}
        # The agent API's refusal as it is: a plan limit keeps its code and words (429 runs_per_minute_limit,
        # concurrent_runs_limit, 402 monthly_spend_cap) and its Retry-After.
        retry = response.headers.get("Retry-After", "")
        send_error(
            conn,
            error.get("code", "chat_failed"),
            error.get("message", f"agent API: {response.status_code}"),
            frame.client_message_id,
            int(retry) if retry.isdigit() else None,
        )
        return
    conn.send_json({"type": "chat_accepted", "client_message_id": frame.client_message_id, **payload})
    thread_id, run_id = payload.get("thread_id"), payload.get("run_id")
    if thread_id and run_id and thread_id not in conn.subscriptions:
        # Follow the new run from its first event, whatever was emitted before this subscription existed.
        follow = Subscribe(type="subscribe", thread_id=thread_id, run_id=run_id, after_seq=0)
        await subscribe(bridge, conn, follow, check_owner=False)
