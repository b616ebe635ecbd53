"""Connecting to ws_bridge: each credential method, each refusal, token expiry and extension, connection
limits. Real bridge processes, real tokens from the real auth service, a real WebSocket client."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import websockets

from tests.ws_bridge.conftest import WsEnv
from tests.ws_bridge.helpers import ORIGIN, closed_code, connect, protocols, recv


def test_scenario_16_refused_origin_and_credentials(start_bridge, ws_env: WsEnv) -> None:
    """Scenario 16: an origin outside the allow-list, or no valid auth: closed with 1008 and a reason that
    says which, and nothing at all is sent before the close."""
    bridge = start_bridge()
    token, _ = ws_env.user("refused")
    url = bridge.url

    async def run() -> None:
        code, reason, got = await closed_code(url, origin="https://evil.example.com", subprotocols=protocols(token))
        assert (code, reason, got) == (1008, "origin not allowed", [])
        code, reason, got = await closed_code(url)
        assert code == 1008 and "missing credentials" in reason and got == []
        code, reason, got = await closed_code(url, subprotocols=protocols(token[:-4] + "AAAA"))
        assert code == 1008 and "invalid token" in reason and got == []
        code, reason, got = await closed_code(url, subprotocols=["jwt-auth"])
        assert code == 1008 and "jwt.<base64url token>" in reason and got == []
        code, reason, got = await closed_code(url, additional_headers={"Authorization": "Bearer not.a.jwt"})
        assert code == 1008 and "invalid token: malformed" in reason
        code, reason, got = await closed_code(f"{url}?token={token}")
        assert code == 1008 and "query string" in reason and got == []
        code, reason, got = await closed_code(f"{url}?ticket=not-a-real-ticket-123")
        assert code == 1008 and "invalid ticket" in reason and got == []

    asyncio.run(run())
    stats = bridge.startup()["stats"]
    assert stats["refused"] == 7 and stats["accepted"] == 0


def test_each_auth_method_in_order(start_bridge, ws_env: WsEnv) -> None:
    """Subprotocol (accepted with jwt-auth), Bearer header, single-use ticket from auth; ?token= only with
    the development switch on."""
    bridge = start_bridge()
    dev_bridge = start_bridge(WS_ALLOW_QUERY_TOKEN="true")
    token, user_id = ws_env.user("methods")

    async def run() -> None:
        ws, hello = await connect(bridge.url, token)
        assert ws.subprotocol == "jwt-auth" and hello["user_id"] == user_id
        assert hello["heartbeat_interval"] == 25.0 and hello["connection_id"]
        await ws.close()

        headers = {"Authorization": f"Bearer {token}"}
        bearer = await websockets.connect(bridge.url, origin=ORIGIN, additional_headers=headers)
        assert (await recv(bearer))["user_id"] == user_id and bearer.subprotocol is None
        await bearer.close()

        # A client without an Origin header (not a browser) is accepted.
        no_origin = await websockets.connect(bridge.url, subprotocols=protocols(token))
        assert (await recv(no_origin))["type"] == "connection_established"
        await no_origin.close()

        response = httpx.post(f"{ws_env.auth.url}/auth/ws-ticket", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        ticket = response.json()["ticket"]
        by_ticket = await websockets.connect(f"{bridge.url}?ticket={ticket}", origin=ORIGIN)
        assert (await recv(by_ticket))["user_id"] == user_id
        # A ticket connection carries no token: chat needs one, which an `auth` frame provides.
        await by_ticket.send(json.dumps({"type": "chat", "content": "hi", "client_message_id": "m1"}))
        refused = await recv(by_ticket)
        assert (refused["code"], refused["client_message_id"]) == ("chat_requires_token", "m1")
        await by_ticket.close()
        code, reason, _ = await closed_code(f"{bridge.url}?ticket={ticket}")
        assert code == 1008 and "already used" in reason, "a ticket is single use"

        query, hello = await connect(f"{dev_bridge.url}?token={token}")
        assert hello["user_id"] == user_id
        await query.close()

    asyncio.run(run())


def test_token_expiry_closes_4001_unless_extended(start_bridge, ws_env: WsEnv) -> None:
    """A connection lives as long as its token; an `auth` frame with a fresh token of the same user extends
    it, another user's token or a bad one is refused with an error frame."""
    bridge = start_bridge()
    token, user_id = ws_env.user("expiry")
    other_token, _ = ws_env.user("other")

    async def run() -> None:
        short = ws_env.short_token(user_id, ttl_s=2)
        ws, _ = await connect(bridge.url, short)
        started = time.monotonic()
        with_error = None
        try:
            while True:
                await recv(ws, 15)
        except websockets.ConnectionClosed as exc:
            with_error = exc
        assert with_error is not None and ws.close_code == 4001, (ws.close_code, ws.close_reason)
        assert "expired" in ws.close_reason
        print(f"closed {time.monotonic() - started:.1f}s after connecting with a 2 s token")

        extended, _ = await connect(bridge.url, ws_env.short_token(user_id, ttl_s=2))
        await extended.send(json.dumps({"type": "auth", "token": other_token}))
        assert (await recv(extended))["code"] == "invalid_token"
        await extended.send(json.dumps({"type": "auth", "token": "x" * 40}))
        assert (await recv(extended))["code"] == "invalid_token"
        await extended.send(json.dumps({"type": "auth", "token": token}))
        ok = await recv(extended)
        assert ok["type"] == "auth_ok" and ok["expires_at"] > time.time() + 60
        await asyncio.sleep(3.5)  # past the first token's expiry
        await extended.send(json.dumps({"type": "ping"}))
        assert (await recv(extended))["type"] == "pong"
        await extended.close()

    asyncio.run(run())
    assert bridge.startup()["stats"]["expired_closed"] == 1


def test_connections_per_user_limit(start_bridge, ws_env: WsEnv) -> None:
    """The per-user limit has its own error code, then a retryable close; other users are unaffected."""
    bridge = start_bridge(MAX_CONNECTIONS_PER_USER="2")
    token, _ = ws_env.user("limit")
    other, _ = ws_env.user("limit-other")

    async def run() -> None:
        first, _ = await connect(bridge.url, token)
        second, _ = await connect(bridge.url, token)
        code, reason, got = await closed_code(bridge.url, subprotocols=protocols(token))
        assert code == 1013 and "too many connections" in reason
        assert [json.loads(g)["code"] for g in got] == ["too_many_connections"]
        third, _ = await connect(bridge.url, other)
        await first.close()
        await asyncio.sleep(0.2)
        again, _ = await connect(bridge.url, token)  # a slot is free again
        for ws in (second, third, again):
            await ws.close()

    asyncio.run(run())


def test_ticket_while_auth_is_unreachable_is_a_retryable_1013(start_bridge, ws_env: WsEnv) -> None:
    """Scenario 16: a ticket cannot be redeemed because auth is down: the refusal is the retryable 1013 with
    a reason saying so (not 1008, which would send the user back to sign-in), and nothing is sent before it.
    Tokens keep working: they are verified locally against the cached keys."""
    from emulators.postgres import free_port

    bridge = start_bridge(AUTH_URL=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    token, user_id = ws_env.user("ticket-down")

    async def run() -> None:
        code, reason, got = await closed_code(f"{bridge.url}?ticket=some-ticket-value-123")
        assert (code, got) == (1013, []) and "auth unreachable" in reason, (code, reason, got)
        ws, hello = await connect(bridge.url, token)
        assert hello["user_id"] == user_id
        await ws.close()

    asyncio.run(run())


def test_scenario_9_ready_before_the_key_set_is_reachable_then_verifies(start_bridge, ws_env: WsEnv) -> None:
    """Scenario 9, as a first `terraform apply` meets it: auth's public host (AUTH_JWKS_URL) does not answer yet
    because the load balancer in front of it is created after the bridge. The bridge must still become ready (its
    startup probe gates the apply), serve tickets, refuse a token with the retryable 1013, and verify tokens as
    soon as the key set answers, without a restart."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from emulators.postgres import free_port

    port = free_port()  # the "public host": nothing listens there yet
    bridge = start_bridge(wait="", AUTH_JWKS_URL=f"http://127.0.0.1:{port}/.well-known/jwks.json")
    bridge.process.wait_http(f"{bridge.http}/health/ready", timeout_s=30)
    ready = httpx.get(f"{bridge.http}/health/ready", timeout=5).json()
    assert ready["degraded"] is True, ready
    assert bridge.startup()["components"]["keyset"]["status"] != "up"
    token, user_id = ws_env.user("keys-late")

    async def refused() -> None:
        code, reason, got = await closed_code(bridge.url, subprotocols=protocols(token))
        assert (code, got) == (1013, []) and "token keys unavailable" in reason, (code, reason, got)

    asyncio.run(refused())

    document = httpx.get(ws_env.auth.jwks_url, timeout=5).content

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:

        async def served() -> None:
            deadline = time.monotonic() + 20
            while True:  # a refusal just after a failed fetch is fail-fast for 1 s: retry like a client
                try:
                    ws, hello = await connect(bridge.url, token)
                    break
                except AssertionError:
                    raise
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.5)
            assert hello["user_id"] == user_id
            await ws.close()

        asyncio.run(served())
    finally:
        server.shutdown()
        server.server_close()


def test_ticket_connection_ends_with_the_token_that_minted_the_ticket(start_bridge, ws_env: WsEnv) -> None:
    """Issue 15, finding 7: a connection opened with a ticket lived TICKET_CONNECTION_TTL_S (15 min) whatever
    the access token that minted the ticket; now it closes (4001) when that token expires, like a token
    connection does. The ticket comes from the real auth service, minted with a 3 s token."""
    bridge = start_bridge()
    _, user_id = ws_env.user("ticket-expiry")
    short = ws_env.short_token(user_id, ttl_s=3)
    minted = httpx.post(f"{ws_env.auth.url}/auth/ws-ticket", headers={"Authorization": f"Bearer {short}"})
    assert minted.status_code == 200, minted.text
    ticket = minted.json()["ticket"]

    async def run() -> None:
        ws, hello = await connect(f"{bridge.url}?ticket={ticket}")
        assert hello["user_id"] == user_id
        started = time.monotonic()
        try:
            while True:
                await recv(ws, 15)
        except websockets.ConnectionClosed:
            pass
        assert ws.close_code == 4001 and "expired" in ws.close_reason, (ws.close_code, ws.close_reason)
        print(f"ticket connection closed {time.monotonic() - started:.1f}s after connecting (token: 3 s)")

    asyncio.run(run())
