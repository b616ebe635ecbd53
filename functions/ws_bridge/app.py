"""``create_app(settings)``: the ws_bridge Starlette app; ``app.state.context`` is its :class:`BridgeContext`;
``asgi(app)`` is what the server runs (/ws without Starlette's routing, the rest through the app).

Every handler reads the context from the app it was called through (``request.app.state.context``, or the
``asgi`` closure's for /ws), so nothing of an instance lives at module level. Protocol: docs/WEBSOCKET.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from functions.ws_bridge import frames, page, peers
from functions.ws_bridge.auth import SUBPROTOCOL, Identity, Refused, authenticate, offered_protocols
from functions.ws_bridge.context import BridgeContext
from functions.ws_bridge.hub import Connection, Hub, close
from functions.ws_bridge.limits import raise_fd_limit
from functions.ws_bridge.replay import repairer
from functions.ws_bridge.settings import BridgeSettings
from shared.http import origin_allowed
from shared.models.ws import CLOSE_POLICY, CLOSE_RESTART, CLOSE_TRY_AGAIN
from shared.service import database_components, init_service
from shared.startup import Component, HealthAnswer, HealthKind, Priority
from shared.tokens.verify import verifier_from_settings

log = logging.getLogger("ws_bridge")


def components(ctx: BridgeContext) -> list[Component]:
    settings, hub = ctx.settings, ctx.hub

    def start_subscription() -> Any:
        from functions.ws_bridge.fanout import EventSubscription

        return EventSubscription(
            settings.google_cloud_project, settings.subscription_ttl_seconds, hub.wants, hub.publish_threadsafe
        ).start()

    def warm_event_log() -> Any:
        # The first resume after a cold start (a reconnect storm lands on fresh instances) should not also pay
        # for importing the Firestore client; not gating readiness: replay works without it, only slower.
        from shared.firestore import get_client

        return get_client()

    return [
        *database_components(settings, "ws-bridge"),
        # Not critical: readiness must not wait for auth's public host, which the same `terraform apply` creates
        # after this service (the load balancer has the bridge as a backend: a first apply would never finish,
        # docs/DEPLOY.md). Ticket connections need no keys; a token verified before the keys arrive fetches them
        # itself (single-flight) or is refused with the retryable 1013 (scenario 9).
        Component("keyset", ctx.verifier.warm, Priority.HIGH, timeout_s=20.0),
        Component("agent_events", start_subscription, Priority.CRITICAL, timeout_s=30.0),
        Component("event_log", warm_event_log, Priority.LOW, depends_on=("agent_events",), timeout_s=30.0),
    ]


def _reason(text: str) -> str:
    """Close reasons are limited to 123 bytes by the protocol."""
    return text.encode()[:123].decode(errors="ignore")


async def wait_ready(ctx: BridgeContext, timeout_s: float) -> None:
    # Polling the flag instead of a thread per waiting connection: a burst on a cold instance (scenario 14)
    # must not queue hundreds of blocking waits in the executor.
    deadline = time.monotonic() + timeout_s
    while not ctx.manager.is_ready():
        if time.monotonic() >= deadline:
            raise Refused(CLOSE_TRY_AGAIN, "instance starting; retry shortly")
        await asyncio.sleep(0.05)


async def admit(ctx: BridgeContext, ws: WebSocket) -> Identity:
    settings, hub = ctx.settings, ctx.hub
    if not hub.accepting:
        raise Refused(CLOSE_RESTART, "instance shutting down; reconnect")
    capacity = ctx.fd_limit.max_connections if ctx.fd_limit else None
    if capacity is not None and hub.total >= capacity:
        raise Refused(CLOSE_TRY_AGAIN, f"instance at capacity ({capacity} connections); retry shortly")
    origin = ws.headers.get("origin")
    # Browsers always send Origin; a client without one cannot be driven by another site's page.
    if origin is not None and not origin_allowed(origin, settings.origins):
        raise Refused(CLOSE_POLICY, "origin not allowed")
    await wait_ready(ctx, settings.startup_wait_seconds)
    return await authenticate(ws.headers, ws.query_params, settings, ctx.verifier)


def release_handshake(scope: dict[str, Any], server: Any) -> None:
    """Drop what only the handshake needed. The server keeps the request's headers for the socket's lifetime
    (in the scope, and uvicorn's sans-I/O protocol as the parsed request and the prepared response); with the
    jwt. subprotocol they carry the access token several times over, about 3 KiB per idle connection that
    nothing reads again: the connection keeps the one token it chats with."""
    scope["headers"].clear()  # in place: Starlette's cached Headers view of the scope shares this list
    scope["subprotocols"].clear()
    # Attributes uvicorn's websockets-sansio protocol (the server __main__ runs) reads only while the handshake
    # is in progress; any other server is left alone (tests/ws_bridge/test_handshake_release.py pins this).
    if isinstance(server, WebSocketsSansIOProtocol) and server.handshake_complete:
        request, server.request, server.response = server.request, None, None
        if request is not None:
            # websockets' own parser keeps the request object (a local of its suspended generator): empty it.
            request.headers.clear()


async def websocket_endpoint(ctx: BridgeContext, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/ws, served by :func:`asgi` without Starlette's routing around it. Starlette's WebSocket does the
    handshake (headers, accept, refusals); an accepted connection then holds only the server's ``send`` and
    this frame the server's ``receive``."""
    settings, hub = ctx.settings, ctx.hub
    ws = WebSocket(scope, receive, send)
    subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered_protocols(ws.headers) else None
    try:
        identity = await admit(ctx, ws)
    except Refused as exc:
        hub.stats.refused += 1
        # Nothing but the close frame is sent before authentication; accepting first is what lets the
        # client see the code and reason (a refused handshake is a bare HTTP 403).
        try:
            await ws.accept(subprotocol=subprotocol)
            await ws.close(code=exc.code, reason=_reason(exc.reason))
        except Exception:  # noqa: S110 - the client left while being checked
            pass
        return
    try:
        await ws.accept(subprotocol=subprotocol)
    except Exception:  # the client left while being checked
        return
    server = getattr(send, "__self__", None)
    release_handshake(scope, server)
    conn = Connection(
        send,
        identity.user_id,
        identity.token,
        identity.expires_at,
        settings.send_queue_size,
        None,  # the frame-rate bucket: with the first frame
        identity.method,
        settings.close_timeout_s,
        transport=getattr(server, "transport", None),
    )
    del identity  # not held by this frame for the socket's lifetime: the connection has what it needs
    if hub.count(conn.user_id) >= settings.max_connections_per_user:
        hub.stats.refused += 1
        limit = settings.max_connections_per_user
        await ws.send_json(
            {
                "type": "error",
                "code": "too_many_connections",
                "message": f"at most {limit} connections per user on one instance",
            }
        )
        await ws.close(code=CLOSE_TRY_AGAIN, reason="too many connections for this user")
        return
    hub.add(conn)
    del ws
    conn.send_json(
        {
            "type": "connection_established",
            "connection_id": conn.connection_id,
            "user_id": conn.user_id,
            "server_time": datetime.now(UTC).isoformat(),
            "heartbeat_interval": settings.heartbeat_interval_s,
        }
    )
    try:
        while not conn.closed:
            message = await receive()  # after the accept: websocket.receive or websocket.disconnect
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                frames.send_error(conn, "binary_not_supported", "send JSON text frames")
                continue
            try:
                await frames.handle(ctx, conn, text)
            except Exception:  # one bad frame must not take the connection down
                log.exception("frame handling failed")
                frames.send_error(conn, "internal", "the frame could not be handled")
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        hub.remove(conn)
        conn.closed = True
        conn.stop_tasks()


def asgi(app: Starlette) -> Callable[..., Any]:
    """What the server runs: /ws straight to :func:`websocket_endpoint`, everything else (health, the chat
    page, lifespan) to the Starlette app. Starlette's middleware and routing around an endpoint stay alive
    as long as the socket does (about 4 KiB of frames per idle connection, issue 18); /ws needs none of it."""
    ctx: BridgeContext = app.state.context

    async def serve(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            await websocket_endpoint(ctx, scope, receive, send)
        else:
            await app(scope, receive, send)

    return serve


async def health(request: Request) -> Response:
    ctx: BridgeContext = request.app.state.context
    try:
        kind = HealthKind(request.path_params["kind"])
    except ValueError:
        return JSONResponse({"error": {"code": "not_found", "message": "no such health check"}}, 404)
    status, body, headers = ctx.manager.health(kind)
    return JSONResponse(body, status, headers)


def health_overlay(ctx: BridgeContext) -> Callable[[HealthKind, HealthAnswer], HealthAnswer]:
    """What the bridge adds to the shared health answers: shutting down, and its connections and stats."""

    def overlay(kind: HealthKind, answer: HealthAnswer) -> HealthAnswer:
        manager, hub, fd_limit = ctx.manager, ctx.hub, ctx.fd_limit
        status, body, headers = answer
        if kind is HealthKind.READY and not hub.accepting:
            status, body = 503, {"status": "shutting_down", "service": "ws-bridge"}
        if kind is HealthKind.STARTUP:
            body["fd_limit"] = fd_limit.as_dict() if fd_limit else None
            body["connections"] = hub.total
            body["queued_frames"] = sum(c.queued() for c in hub.all())
            body["accepting"] = hub.accepting
            body["stats"] = vars(hub.stats)
            body["subscription"] = manager.resource("agent_events").name if manager.is_up("agent_events") else None
        return status, body, headers

    return overlay


async def close_all(
    hub: Hub, code: int = CLOSE_RESTART, reason: str = "instance restarting; reconnect and resume"
) -> None:
    hub.accepting = False
    conns = hub.all()
    for conn in conns:  # a peer that does not read must not hold the shutdown past Cloud Run's 10 s
        conn.close_timeout_s = min(conn.close_timeout_s, 2.0)
    await asyncio.gather(*(close(c, code, reason) for c in conns), return_exceptions=True)


def begin_shutdown(ctx: BridgeContext) -> asyncio.Task[None]:
    """SIGTERM (Cloud Run gives 10 s): stop accepting, close every socket with 1012 so clients reconnect
    elsewhere at once, then delete the subscription. Idempotent: the signal and the lifespan share it."""
    if ctx.shutdown is None:
        ctx.shutdown = asyncio.get_running_loop().create_task(_shut_down(ctx))
    return ctx.shutdown


async def _shut_down(ctx: BridgeContext) -> None:
    manager, hub = ctx.manager, ctx.hub
    started = time.monotonic()
    count = hub.total
    await close_all(hub)
    if manager.is_up("agent_events"):
        await asyncio.to_thread(manager.resource("agent_events").stop)
    log.info("shut down", extra={"closed": count, "shutdown_ms": round((time.monotonic() - started) * 1000)})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    ctx: BridgeContext = app.state.context
    hub = ctx.hub
    ctx.fd_limit = raise_fd_limit(ctx.settings.max_connections)
    log.info("file descriptor limit", extra=ctx.fd_limit.as_dict())
    loop = asyncio.get_running_loop()
    # Firestore reads, token checks and database queries run in threads; the default pool (cores + 4)
    # would serialize a reconnect storm's replays.
    loop.set_default_executor(ThreadPoolExecutor(max_workers=32, thread_name_prefix="bridge"))
    hub.loop = loop
    ctx.manager.start()
    sweeper = loop.create_task(hub.sweep_expired())
    try:
        yield
    finally:
        sweeper.cancel()
        await begin_shutdown(ctx)
        await peers.aclose()


def create_app(settings: BridgeSettings) -> Starlette:
    manager = init_service("ws-bridge", settings)
    hub = Hub(buffer_limit=settings.replay_buffer_size)
    hub.repair = repairer(settings.replay_page_size)
    ctx = BridgeContext(settings, manager, hub, verifier_from_settings(settings))
    manager.register_all(components(ctx))
    manager.health_overlay = health_overlay(ctx)
    app = Starlette(
        routes=[
            Route("/health/{kind}", health),
            *page.routes(settings),  # the chat page and its config.json (docs/WEB.md)
        ],
        lifespan=lifespan,
    )
    app.state.context = ctx
    return app
