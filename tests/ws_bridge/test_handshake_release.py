"""app.release_handshake against the real server stack (uvicorn's websockets-sansio protocol, websockets' parser):
after the accept, nothing of the handshake's headers (with the jwt. subprotocol: the access token) stays
reachable from the connection, and the socket still works. Issue 18 (idle memory per connection); this pins the
uvicorn and websockets internals the release relies on, so an upgrade that moves them fails here."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import uvicorn
from websockets.sync.client import connect

from emulators.postgres import free_port
from functions.ws_bridge.app import release_handshake

MARKER = "header.payload-that-only-the-handshake-needs.signature"


def test_release_handshake_drops_every_copy_of_the_headers_and_keeps_the_socket() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        await receive()  # websocket.connect
        await send({"type": "websocket.accept", "subprotocol": "jwt-auth"})
        server = send.__self__
        request = server.request
        seen["before"] = MARKER in str(scope["headers"]) and MARKER in str(request.headers)
        release_handshake(scope, server)
        parser_request = server.conn.parser.gi_frame.f_locals.get("request")  # websockets' suspended parser
        seen["after"] = {
            "scope_headers": list(scope["headers"]),
            "subprotocols": list(scope["subprotocols"]),
            "server_request": server.request,
            "server_response": server.response,
            "request_headers": list(request.headers.raw_items()),
            "parser_request_is_it": parser_request is request,
        }
        message = await receive()
        await send({"type": "websocket.send", "text": "echo " + message["text"]})
        await receive()  # the client's close

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, ws="websockets-sansio", lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        protocols = ["jwt-auth", "jwt." + base64.urlsafe_b64encode(MARKER.encode()).decode().rstrip("=")]
        headers = {"X-Marker": MARKER}
        with connect(f"ws://127.0.0.1:{port}/ws", subprotocols=protocols, additional_headers=headers) as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "echo hello"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert seen["before"], "the handshake's headers did not reach the app"
    assert seen["after"] == {
        "scope_headers": [],
        "subprotocols": [],
        "server_request": None,
        "server_response": None,
        "request_headers": [],
        "parser_request_is_it": True,
    }


def test_release_handshake_leaves_another_server_alone() -> None:
    """Only uvicorn's websockets-sansio protocol is touched; the scope is the ASGI app's own to clear."""

    class OtherServer:
        handshake_complete = True
        request = response = "kept"

    scope: dict[str, Any] = {"headers": [(b"x-marker", MARKER.encode())], "subprotocols": ["jwt-auth"]}
    other = OtherServer()
    release_handshake(scope, other)
    assert scope == {"headers": [], "subprotocols": []}
    assert (other.request, other.response) == ("kept", "kept")
