"""ws_bridge as real processes on the local emulators, with a real WebSocket client and real tokens."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pg8000.dbapi
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from emulators.postgres import free_port
from emulators.process import ManagedProcess
from shared.db.connect import parse_database_url
from shared.models.events import AgentEvent
from tests.fixtures.auth import AuthService

PROJECT = "netra-ws-test"
ORIGIN = "http://localhost:3000"


@dataclass
class Env:
    env: dict[str, str]
    auth: AuthService
    db_url: str


@pytest.fixture
def bridge_env(
    shared_db_url: str,
    pubsub_emulator_host: str,
    firestore_emulator_host: str,
    auth_service_session: AuthService,
    monkeypatch: pytest.MonkeyPatch,
) -> Env:
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1

    try:
        pubsub_v1.PublisherClient().create_topic(name=f"projects/{PROJECT}/topics/agent-events")
    except AlreadyExists:
        pass
    prefix = f"ws{uuid.uuid4().hex[:8]}_"
    monkeypatch.setenv("FIRESTORE_COLLECTION_PREFIX", prefix)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    from shared import firestore

    firestore.reset_client()
    env = {
        "NETRA_ENV": "test",
        "DATABASE_URL": shared_db_url,
        "PUBSUB_EMULATOR_HOST": pubsub_emulator_host,
        "FIRESTORE_EMULATOR_HOST": firestore_emulator_host,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "FIRESTORE_COLLECTION_PREFIX": prefix,
        "AUTH_URL": auth_service_session.url,
        "ALLOWED_ORIGINS": "http://localhost:*",
        **auth_service_session.env,
    }
    return Env(env, auth_service_session, shared_db_url)


@pytest.fixture
def start_bridge(bridge_env: Env) -> Iterator:
    procs: list[ManagedProcess] = []

    def start(**extra: str) -> tuple[ManagedProcess, str]:
        port = free_port()
        proc = ManagedProcess(
            "ws-bridge",
            [".venv/bin/python", "-m", "functions.ws_bridge", "--port", str(port)],
            env={**bridge_env.env, **extra},
        ).start()
        procs.append(proc)
        proc.wait_http(f"http://127.0.0.1:{port}/health/ready", timeout_s=60)
        return proc, f"ws://127.0.0.1:{port}/ws"

    yield start
    for proc in procs:
        proc.stop()
        print(proc.output()[-4000:])  # shown by pytest when the test fails


def make_thread(db_url: str, user_id: str) -> str:
    t = parse_database_url(db_url)
    conn = pg8000.dbapi.connect(user=t.user, password=t.password, host=t.host, port=t.port, database=t.database)
    cur = conn.cursor()
    cur.execute("INSERT INTO threads (user_id, title) VALUES (%s, 'ws test') RETURNING id", (user_id,))
    thread_id = str(cur.fetchone()[0])
    conn.commit()
    conn.close()
    return thread_id


def emit(user_id: str, thread_id: str, run_id: str, seq: int, type_: str = "partial_result") -> AgentEvent:
    """Exactly what the worker does: append to the Firestore event log, publish with ordering key."""
    from google.cloud import pubsub_v1

    from shared.firestore import collection_name, get_client, ttl_expiry

    event = AgentEvent(
        type=type_, run_id=run_id, thread_id=thread_id, seq=seq, agent_name="test", data={"text": f"part {seq}"}
    )
    run = get_client().collection(collection_name("runs")).document(run_id)
    run.set({"run_id": run_id, "thread_id": thread_id, "user_id": user_id, "last_seq": seq}, merge=True)
    run.collection("events").document(f"{seq:010d}").set(
        {**event.model_dump(mode="json"), "user_id": user_id, "expires_at": ttl_expiry(3600)}
    )
    publisher = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    publisher.publish(
        f"projects/{PROJECT}/topics/agent-events", event.to_bytes(), ordering_key=thread_id, **event.attributes(user_id)
    ).result(10)
    return event


def protocols(token: str) -> list[str]:
    return ["jwt-auth", "jwt." + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")]


async def connect(url: str, token: str | None = None, **kwargs):  # noqa: ANN003, ANN201
    ws = await websockets.connect(url, subprotocols=protocols(token) if token else None, origin=ORIGIN, **kwargs)
    hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert hello["type"] == "connection_established"
    return ws, hello


async def until(ws, predicate, timeout: float = 15.0) -> list[dict]:  # noqa: ANN001
    frames = []

    async def loop() -> None:
        while True:
            frame = json.loads(await ws.recv())
            frames.append(frame)
            if predicate(frame):
                return

    await asyncio.wait_for(loop(), timeout)
    return frames


async def closed_code(url: str, **kwargs) -> tuple[int, str]:  # noqa: ANN003
    ws = await websockets.connect(url, **kwargs)
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 10)
    return ws.close_code, ws.close_reason


def test_scenario_16_refused_origin_and_credentials(start_bridge, bridge_env: Env) -> None:
    """Scenario 16: an origin outside the allow-list, or no valid auth: closed with 1008 and a reason,
    nothing sent before."""
    _, url = start_bridge()
    token = bridge_env.auth.login("ws-refused@example.com")["access_token"]

    async def run() -> None:
        assert await closed_code(url, origin="https://evil.example.com", subprotocols=protocols(token)) == (
            1008,
            "origin not allowed",
        )
        code, reason = await closed_code(url, origin=ORIGIN)
        assert code == 1008 and "missing credentials" in reason
        code, reason = await closed_code(url, origin=ORIGIN, subprotocols=protocols(token[:-4] + "AAAA"))
        assert code == 1008 and "invalid token" in reason
        code, reason = await closed_code(f"{url}?token={token}", origin=ORIGIN)
        assert code == 1008 and "query string" in reason
        code, reason = await closed_code(f"{url}?ticket=not-a-real-ticket-123", origin=ORIGIN)
        assert code == 1008 and "ticket" in reason

    asyncio.run(run())


def test_auth_methods_and_frames(start_bridge, bridge_env: Env) -> None:
    import httpx

    _, url = start_bridge()
    tokens = bridge_env.auth.login("ws-auth@example.com")
    token = tokens["access_token"]

    async def run() -> None:
        ws, hello = await connect(url, token)
        assert ws.subprotocol == "jwt-auth" and hello["user_id"] == tokens["user"]["id"]
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"
        await ws.send("{nope")
        assert json.loads(await ws.recv())["code"] == "invalid_json"
        await ws.send(json.dumps({"type": "dance"}))
        assert json.loads(await ws.recv())["code"] == "unknown_frame"
        await ws.send(json.dumps({"type": "subscribe", "thread_id": str(uuid.uuid4())}))
        assert json.loads(await ws.recv())["code"] == "thread_not_found"
        await ws.send(json.dumps({"type": "ping", "pad": "x" * 70_000}))
        assert json.loads(await ws.recv())["code"] == "frame_too_large"
        await ws.close()
        bearer = await websockets.connect(url, origin=ORIGIN, additional_headers={"Authorization": f"Bearer {token}"})
        assert json.loads(await bearer.recv())["user_id"] == tokens["user"]["id"]
        await bearer.close()
        ticket = httpx.post(
            f"{bridge_env.auth.url}/auth/ws-ticket", headers={"Authorization": f"Bearer {token}"}
        ).json()["ticket"]
        by_ticket = await websockets.connect(f"{url}?ticket={ticket}", origin=ORIGIN)
        assert json.loads(await by_ticket.recv())["user_id"] == tokens["user"]["id"]
        await by_ticket.close()
        code, _ = await closed_code(f"{url}?ticket={ticket}", origin=ORIGIN)
        assert code == 1008, "a ticket is single use"

    asyncio.run(run())


def test_scenario_15_events_reach_only_their_owner_and_resume_without_gap_or_duplicate(
    start_bridge, bridge_env: Env
) -> None:
    """Scenario 15: a client that reconnects (to another instance) with after_seq gets every missed event
    exactly once, in order; other users never see them."""
    _, url_a = start_bridge()
    _, url_b = start_bridge()
    alice = bridge_env.auth.login("ws-alice@example.com")
    bob = bridge_env.auth.login("ws-bob@example.com")
    thread_a = make_thread(bridge_env.db_url, alice["user"]["id"])
    thread_b = make_thread(bridge_env.db_url, bob["user"]["id"])
    run_id = str(uuid.uuid4())

    async def run() -> None:
        ws_a, _ = await connect(url_a, alice["access_token"])
        ws_b, _ = await connect(url_a, bob["access_token"])
        for ws, thread in ((ws_a, thread_a), (ws_b, thread_b)):
            await ws.send(json.dumps({"type": "subscribe", "thread_id": thread}))
            assert (await until(ws, lambda f: f["type"] == "subscribed"))[-1]["replayed"] == 0
        # Bob must not be able to subscribe to Alice's thread.
        await ws_b.send(json.dumps({"type": "subscribe", "thread_id": thread_a}))
        assert json.loads(await ws_b.recv())["code"] == "thread_not_found"
        for seq in (1, 2, 3):
            await asyncio.to_thread(emit, alice["user"]["id"], thread_a, run_id, seq)
        got = await until(ws_a, lambda f: f.get("seq") == 3)
        assert [f["seq"] for f in got] == [1, 2, 3]
        await ws_a.close()
        for seq in (4, 5):
            await asyncio.to_thread(emit, alice["user"]["id"], thread_a, run_id, seq)
        ws_a2, _ = await connect(url_b, alice["access_token"])
        await ws_a2.send(json.dumps({"type": "subscribe", "thread_id": thread_a, "run_id": run_id, "after_seq": 3}))
        resumed = await until(ws_a2, lambda f: f["type"] == "subscribed")
        await asyncio.to_thread(emit, alice["user"]["id"], thread_a, run_id, 6, "agent_completed")
        resumed += await until(ws_a2, lambda f: f.get("seq") == 6)
        seqs = [f["seq"] for f in resumed if "seq" in f]
        assert seqs == [4, 5, 6], seqs
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ws_b.recv(), 1.5)  # nothing of Alice's reached Bob
        await ws_a2.close()
        await ws_b.close()

    asyncio.run(run())


def test_scenario_18_sigterm_closes_1012_and_nothing_is_lost(start_bridge, bridge_env: Env) -> None:
    """Scenario 18: an event published while an instance shuts down reaches the client after it reconnects
    elsewhere."""
    proc_a, url_a = start_bridge()
    _, url_b = start_bridge()
    user = bridge_env.auth.login("ws-sigterm@example.com")
    thread = make_thread(bridge_env.db_url, user["user"]["id"])
    run_id = str(uuid.uuid4())

    async def run() -> None:
        ws, _ = await connect(url_a, user["access_token"])
        await ws.send(json.dumps({"type": "subscribe", "thread_id": thread}))
        await until(ws, lambda f: f["type"] == "subscribed")
        await asyncio.to_thread(emit, user["user"]["id"], thread, run_id, 1)
        assert (await until(ws, lambda f: f.get("seq") == 1))[-1]["seq"] == 1
        proc_a.signal(signal.SIGTERM)
        await asyncio.to_thread(emit, user["user"]["id"], thread, run_id, 2)
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1012
        ws2, _ = await connect(url_b, user["access_token"])
        await ws2.send(json.dumps({"type": "subscribe", "thread_id": thread, "run_id": run_id, "after_seq": 1}))
        frames = await until(ws2, lambda f: f["type"] == "subscribed")
        assert [f["seq"] for f in frames if "seq" in f] == [2]
        await ws2.close()

    asyncio.run(run())
    assert proc_a.proc.wait(10) is not None, "the instance exits within Cloud Run's 10 s"


def test_scenario_14_connection_burst_on_a_just_started_bridge(start_bridge, bridge_env: Env) -> None:
    """Scenario 14: a burst of connections on a just-started bridge: all accepted and served, or refused with
    a retryable code; none hangs."""
    _, url = start_bridge(MAX_CONNECTIONS_PER_USER="500")
    token = bridge_env.auth.login("ws-burst@example.com")["access_token"]

    async def one() -> str:
        try:
            ws, _ = await connect(url, token, open_timeout=20)
            await ws.send(json.dumps({"type": "ping"}))
            frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
            await ws.close()
            return frame["type"]
        except ConnectionClosed as exc:
            return f"closed {exc.rcvd.code if exc.rcvd else '?'}"

    async def run() -> list[str]:
        return await asyncio.gather(*(one() for _ in range(200)))

    outcomes = asyncio.run(run())
    assert all(o == "pong" or o == "closed 1013" for o in outcomes), set(outcomes)
    assert outcomes.count("pong") >= 190
