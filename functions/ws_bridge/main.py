"""ws_bridge: the authenticated WebSocket endpoint (Cloud Run service, ASGI app ``app``)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import resource
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from functions.ws_bridge.hub import Connection, Hub, close
from functions.ws_bridge.settings import BridgeSettings
from shared.config import load_settings
from shared.errors import ApiError
from shared.http import origin_allowed
from shared.models.ws import CLOSE_POLICY, CLOSE_RESTART, CLOSE_TOKEN_EXPIRED, CLOSE_TRY_AGAIN, ClientFrame
from shared.service import database_components, init_service
from shared.startup import Component, Priority
from shared.tokens import TokenInvalid, verifier_from_settings

log = logging.getLogger("ws_bridge")
STATIC = Path(__file__).parent / "static"

settings = load_settings(BridgeSettings)
manager = init_service("ws-bridge", settings)
hub = Hub()
verifier = verifier_from_settings(settings)
frames = TypeAdapter(ClientFrame)


def raise_fd_limit() -> dict[str, int]:
    """Scenario 28: many sockets need file descriptors; raise the soft limit to the hard one and report it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return {"soft": soft, "hard": hard}


def start_subscription() -> Any:
    from functions.ws_bridge.fanout import EventSubscription

    subscription = EventSubscription(
        settings.google_cloud_project, settings.subscription_ttl_seconds, hub.publish_threadsafe
    )
    subscription.start()
    return subscription


manager.register_all(
    [
        *database_components(settings, "ws-bridge"),
        Component("fd_limit", raise_fd_limit, Priority.HIGH),
        Component("jwks", verifier.warm, Priority.CRITICAL, timeout_s=20.0),
        Component("agent_events", start_subscription, Priority.CRITICAL, timeout_s=30.0),
    ]
)


def peer_url(name: str, configured: str | None) -> str:
    if configured:
        return configured.rstrip("/")
    from shared.discovery import lookup_url

    return lookup_url(name, timeout_s=5)


async def authenticate(ws: WebSocket) -> tuple[str, str | None, float, str | None]:
    """(user_id, token, expires_at, subprotocol) or raises ValueError(reason)."""
    protocols = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    token = None
    subprotocol = None
    if "jwt-auth" in protocols:
        encoded = next((p[4:] for p in protocols if p.startswith("jwt.")), None)
        if encoded is None:
            raise ValueError("jwt-auth subprotocol without a jwt.<token> entry")
        try:
            token = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            raise ValueError("jwt.<token> subprotocol is not base64url") from None
        subprotocol = "jwt-auth"
    elif ws.headers.get("authorization", "").lower().startswith("bearer "):
        token = ws.headers["authorization"][7:].strip()
    elif ws.query_params.get("ticket"):
        import httpx

        url = peer_url("auth", settings.auth_url) + "/auth/ws-ticket/redeem"
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.post(url, json={"ticket": ws.query_params["ticket"]})
        if response.status_code != 200:
            raise ValueError("invalid or used ticket")
        return response.json()["user_id"], None, time.time() + 3600, None
    elif ws.query_params.get("token"):
        if not settings.ws_allow_query_token:
            raise ValueError("tokens in the query string are refused; use the jwt-auth subprotocol")
        token = ws.query_params["token"]
    if not token:
        raise ValueError("missing credentials")
    try:
        claims = await asyncio.to_thread(verifier.verify, token)
    except TokenInvalid as exc:
        raise ValueError(f"invalid token: {exc.reason}") from None
    return claims.sub, token, float(claims.exp), subprotocol


async def owns_thread(user_id: str, thread_id: str) -> bool:
    db = manager.resource("database")
    try:
        row = await asyncio.to_thread(
            db.one, "SELECT 1 AS ok FROM threads WHERE id::text = %s AND user_id = %s", (thread_id, user_id)
        )
    except Exception:
        return False
    return row is not None


async def sender(conn: Connection) -> None:
    while True:
        frame = await conn.queue.get()
        if frame is None:
            return
        try:
            await conn.websocket.send_text(frame)
        except Exception:
            return


async def error(conn: Connection, code: str, message: str) -> None:
    if not conn.enqueue(json.dumps({"type": "error", "code": code, "message": message})):
        await close(conn, CLOSE_TRY_AGAIN, "consumer too slow")


async def subscribe(conn: Connection, thread_id: str, run_id: str | None, after_seq: int | None) -> None:
    from functions.ws_bridge.fanout import replay
    from functions.ws_bridge.hub import Subscription

    if not await owns_thread(conn.user_id, thread_id):
        await error(conn, "thread_not_found", f"thread {thread_id} not found")
        return
    sub = Subscription()
    conn.subscriptions[thread_id] = sub  # live events buffer from now on
    replayed: list = []
    if after_seq is not None or run_id:
        try:
            replayed = await asyncio.to_thread(replay, conn.user_id, thread_id, run_id, after_seq or 0)
        except Exception as exc:
            log.warning("replay unavailable", extra={"reason": type(exc).__name__})
            await error(conn, "replay_unavailable", "missed events could not be replayed; poll /api/runs/{id}/events")
    for event in replayed + sub.buffer:
        key = (event.run_id, event.seq)
        if key not in sub.sent:
            sub.sent.add(key)
            conn.enqueue(event.to_frame())
    sub.buffer.clear()
    sub.replaying = False
    conn.enqueue(json.dumps({"type": "subscribed", "thread_id": thread_id, "replayed": len(replayed)}))


async def chat(conn: Connection, frame: Any) -> None:
    if conn.token is None:
        await error(conn, "chat_requires_token", "connect with a token (not a ticket) to send chat frames")
        return
    import httpx

    body = {"content": frame.content, "client_message_id": frame.client_message_id}
    if frame.thread_id:
        body["thread_id"] = frame.thread_id
    try:
        async with httpx.AsyncClient(timeout=15) as client:
            response = await client.post(
                peer_url("agent-api", settings.agent_api_url) + "/api/agent/message",
                json=body,
                headers={"Authorization": f"Bearer {conn.token}"},
            )
    except Exception as exc:
        await error(conn, "agent_unavailable", f"agent API unreachable: {type(exc).__name__}")
        return
    if response.status_code >= 400:
        detail = (
            response.json().get("error", {})
            if response.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        await error(conn, detail.get("code", "chat_failed"), detail.get("message", f"HTTP {response.status_code}"))
        return
    conn.enqueue(json.dumps({"type": "chat_accepted", **response.json()}))


async def handle_frame(conn: Connection, text: str) -> None:
    if len(text.encode()) > settings.max_frame_bytes:
        await error(conn, "frame_too_large", f"frames are limited to {settings.max_frame_bytes} bytes")
        return
    if not conn.allow_frame(settings.max_frames_per_minute):
        await error(conn, "rate_limited", f"at most {settings.max_frames_per_minute} frames per minute")
        return
    try:
        frame = frames.validate_json(text)
    except ValidationError as exc:
        first = exc.errors(include_input=False)[0]
        code = "unknown_frame" if first["type"] in ("union_tag_invalid", "union_tag_not_found") else "invalid_frame"
        if first["type"] == "json_invalid":
            code = "invalid_json"
        await error(conn, code, f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
        return
    if frame.type == "ping":
        conn.enqueue(json.dumps({"type": "pong", "server_time": datetime.now(UTC).isoformat()}))
    elif frame.type == "subscribe":
        await subscribe(conn, frame.thread_id, frame.run_id, frame.after_seq)
    elif frame.type == "unsubscribe":
        conn.subscriptions.pop(frame.thread_id, None)
        conn.enqueue(json.dumps({"type": "unsubscribed", "thread_id": frame.thread_id}))
    elif frame.type == "auth":
        try:
            claims = await asyncio.to_thread(verifier.verify, frame.token)
        except TokenInvalid as exc:
            await error(conn, "invalid_token", f"token refused: {exc.reason}")
            return
        if claims.sub != conn.user_id:
            await error(conn, "invalid_token", "token belongs to another user")
            return
        conn.token, conn.expires_at = frame.token, float(claims.exp)
        conn.enqueue(json.dumps({"type": "auth_ok", "expires_at": claims.exp}))
    elif frame.type == "chat":
        await chat(conn, frame)


async def expiry_watch(conn: Connection) -> None:
    while not conn.closed:
        await asyncio.sleep(max(0.5, min(30.0, conn.expires_at - time.time())))
        if time.time() >= conn.expires_at and not conn.closed:
            await close(conn, CLOSE_TOKEN_EXPIRED, "access token expired; reconnect with a fresh token")


async def websocket_endpoint(ws: WebSocket) -> None:
    origin = ws.headers.get("origin")
    reason = None
    identity: tuple[str, str | None, float, str | None] | None = None
    if origin is not None and not origin_allowed(origin, settings.origins):
        reason = "origin not allowed"
    else:
        try:
            await asyncio.to_thread(manager.require_ready, settings.startup_wait_seconds)
            identity = await authenticate(ws)
        except ValueError as exc:
            reason = str(exc)
        except ApiError:
            await ws.accept()
            await ws.close(code=CLOSE_TRY_AGAIN, reason="starting; retry shortly")
            return
    protocols = ws.headers.get("sec-websocket-protocol", "")
    await ws.accept(subprotocol="jwt-auth" if "jwt-auth" in protocols else None)
    if identity is None:
        await ws.close(code=CLOSE_POLICY, reason=reason or "unauthorized")
        return
    user_id, token, expires_at, _ = identity
    if hub.count(user_id) >= settings.max_connections_per_user:
        await ws.close(code=CLOSE_TRY_AGAIN, reason="too many connections for this user")
        return
    conn = Connection(ws, user_id, token, expires_at, asyncio.Queue(settings.send_queue_size))
    hub.add(conn)
    conn.enqueue(
        json.dumps(
            {
                "type": "connection_established",
                "connection_id": conn.connection_id,
                "user_id": user_id,
                "server_time": datetime.now(UTC).isoformat(),
                "heartbeat_interval": settings.heartbeat_interval_s,
            }
        )
    )
    tasks = [asyncio.create_task(sender(conn)), asyncio.create_task(expiry_watch(conn))]
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                await error(conn, "binary_not_supported", "send JSON text frames")
                continue
            try:
                await handle_frame(conn, text)
            except Exception:  # one bad frame must not take the connection down
                log.exception("frame handling failed")
                await error(conn, "internal", "the frame could not be handled")
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        hub.remove(conn)
        conn.closed = True
        for task in tasks:
            task.cancel()


async def health(request: Request) -> JSONResponse:
    status, body, headers = manager.health(request.path_params["kind"])
    return JSONResponse(body, status, headers)


async def index(request: Request) -> Any:
    page = STATIC / "index.html"
    if page.exists():
        return FileResponse(page)
    return JSONResponse({"error": {"code": "not_found", "message": "no chat page in this build"}}, 404)


async def close_all(code: int = CLOSE_RESTART, reason: str = "instance restarting; reconnect and resume") -> None:
    await asyncio.gather(*(close(c, code, reason) for c in hub.all()), return_exceptions=True)


@asynccontextmanager
async def lifespan(app: Starlette):  # noqa: ANN201
    hub.loop = asyncio.get_running_loop()
    manager.start()
    yield
    await close_all()
    if manager.is_up("agent_events"):
        await asyncio.to_thread(manager.resource("agent_events").stop)


app = Starlette(
    routes=[
        Route("/health/{kind}", health),
        Route("/", index),
        WebSocketRoute("/ws", websocket_endpoint),
    ],
    lifespan=lifespan,
)
