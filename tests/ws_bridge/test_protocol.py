"""Client frames: every invalid or over-limit frame gets its own error code and the connection stays open;
ping, subscribe/unsubscribe, thread ownership, frame size limits (scenario 29)."""

from __future__ import annotations

import asyncio
import json

import httpx
import websockets
from pydantic import TypeAdapter

from shared.models.ws import ServerFrame
from tests.ws_bridge.conftest import WsEnv
from tests.ws_bridge.helpers import connect, new_run, recv, subscribe


def test_invalid_frames_get_error_codes_and_the_connection_survives(start_bridge, ws_env: WsEnv) -> None:
    bridge = start_bridge(MAX_FRAMES_PER_MINUTE="30")
    token, _ = ws_env.user("frames")
    other_token, other_id = ws_env.user("frames-other")
    others_thread = ws_env.thread(other_id)
    server_frames = TypeAdapter(ServerFrame)

    async def run() -> None:
        ws, hello = await connect(bridge.url, token)
        server_frames.validate_python(hello)
        cases = [
            ("{nope", "invalid_json"),
            (json.dumps([1, 2]), "invalid_frame"),
            (json.dumps({"type": "dance"}), "unknown_frame"),
            (json.dumps({"thread_id": "t"}), "unknown_frame"),
            (json.dumps({"type": "subscribe"}), "invalid_frame"),
            (json.dumps({"type": "subscribe", "thread_id": "t", "after_seq": -1}), "invalid_frame"),
            (json.dumps({"type": "chat", "content": ""}), "invalid_frame"),
            (json.dumps({"type": "subscribe", "thread_id": "not-a-uuid"}), "thread_not_found"),
            (json.dumps({"type": "subscribe", "thread_id": others_thread}), "thread_not_found"),
            (json.dumps({"type": "ping", "pad": "x" * 70_000}), "frame_too_large"),
        ]
        for text, code in cases:
            await ws.send(text)
            frame = await recv(ws)
            server_frames.validate_python(frame)
            assert (frame["type"], frame["code"]) == ("error", code), (text[:60], frame)
            assert frame["message"]
        await ws.send(b"\x00\x01")
        assert (await recv(ws))["code"] == "binary_not_supported"
        await ws.send(json.dumps({"type": "ping"}))
        pong = await recv(ws)
        server_frames.validate_python(pong)
        assert pong["type"] == "pong"
        # A fresh connection has a full bucket of 30 frames; 40 at once: 30 answered (31 if a token refilled
        # meanwhile, at 0.5/s), the rest refused with rate_limited, and the connection stays usable.
        fresh, _ = await connect(bridge.url, token)
        for _ in range(40):
            await fresh.send(json.dumps({"type": "ping"}))
        answers = [(await recv(fresh)).get("code", "pong") for _ in range(40)]
        assert answers.count("pong") in (30, 31) and set(answers) == {"pong", "rate_limited"}, answers
        await fresh.close()
        await ws.close()

    asyncio.run(run())


def test_scenario_29_oversized_frame_is_closed_1009_and_the_instance_stays_up(start_bridge, ws_env: WsEnv) -> None:
    """Scenario 29 (large upload): a frame over 4x MAX_FRAME_BYTES is refused by the protocol layer with 1009
    before being buffered whole; the instance and other connections carry on."""
    bridge = start_bridge(MAX_FRAME_BYTES="4096")
    token, _ = ws_env.user("big")

    async def run() -> None:
        bystander, _ = await connect(bridge.url, token)
        ws, _ = await connect(bridge.url, token, max_size=None)
        await ws.send(json.dumps({"type": "ping", "pad": "x" * 5000}))
        assert (await recv(ws))["code"] == "frame_too_large"
        try:  # the server may close while the frame is still being sent
            await ws.send("x" * 5_000_000)
            while True:
                await recv(ws)
        except websockets.ConnectionClosed:
            pass
        assert ws.close_code == 1009
        await bystander.send(json.dumps({"type": "ping"}))
        assert (await recv(bystander))["type"] == "pong"
        await bystander.close()

    asyncio.run(run())
    assert httpx.get(f"{bridge.http}/health/live").status_code == 200


def test_subscribe_unsubscribe_and_thread_ownership(start_bridge, ws_env: WsEnv) -> None:
    """Ownership is checked against Postgres threads; unsubscribe stops delivery; resubscribing with run_id
    and after_seq replays that run."""
    bridge = start_bridge()
    token, user_id = ws_env.user("subs")
    thread = ws_env.thread(user_id)
    run_id = new_run()

    async def run() -> None:
        ws, _ = await connect(bridge.url, token)
        got = await subscribe(ws, thread)
        assert got == [{"type": "subscribed", "thread_id": thread, "replayed": 0}]
        await asyncio.to_thread(ws_env.source.emit, user_id, thread, run_id, 1)
        assert (await recv(ws))["seq"] == 1
        await ws.send(json.dumps({"type": "unsubscribe", "thread_id": thread}))
        assert await recv(ws) == {"type": "unsubscribed", "thread_id": thread}
        await asyncio.to_thread(ws_env.source.emit, user_id, thread, run_id, 2)
        with_timeout = asyncio.wait_for(ws.recv(), 1.5)
        try:
            frame = await with_timeout
            raise AssertionError(f"received after unsubscribe: {frame}")
        except TimeoutError:
            pass
        got = await subscribe(ws, thread, run_id=run_id, after_seq=0)
        assert [f.get("seq") for f in got] == [1, 2, None] and got[-1]["replayed"] == 2
        await ws.close()

    asyncio.run(run())


def test_health_endpoints_and_index(start_bridge, ws_env: WsEnv) -> None:
    bridge = start_bridge()
    assert httpx.get(f"{bridge.http}/health/live").json()["status"] == "alive"
    assert httpx.get(f"{bridge.http}/health/ready").status_code == 200
    body = bridge.startup()
    assert body["ready"] is True and body["subscription"].startswith(f"projects/{ws_env.project}/subscriptions/")
    assert set(body["components"]) == {"database", "schema", "keyset", "agent_events", "event_log"}
    assert httpx.get(f"{bridge.http}/health/other").status_code == 404
    index = httpx.get(f"{bridge.http}/")
    assert index.status_code in (200, 404)
    if index.status_code == 404:
        assert index.json()["error"]["code"] == "not_found"
