"""`chat` over the WebSocket, end to end on the local stack: bridge -> agent API (HTTP, the user's token) ->
agent-requests -> agent worker (push) -> Firestore log + agent-events -> bridge -> the client."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.harness import AgentStack
from tests.fixtures.auth import AuthService
from tests.ws_bridge.helpers import Bridge, connect, recv, seqs, until


def agent_stack(db_url: str, pubsub_host: str, firestore_host: str, auth: AuthService, workdir: Path) -> AgentStack:
    """An agent stack on the shared emulators and database, its topology created, nothing started yet."""
    stack = AgentStack(
        db_url=db_url,
        pubsub_host=pubsub_host,
        firestore_host=firestore_host,
        workdir=workdir,
        jwks_url=auth.jwks_url,
        issuer=auth.issuer,
    )
    stack.create_topology()
    return stack


def bridge_env(stack: AgentStack, auth: AuthService) -> dict[str, str]:
    """What a bridge needs to verify tokens and reach this stack's agent API."""
    return {**stack.env(), **auth.env, "AGENT_API_URL": stack.api_url, "ALLOWED_ORIGINS": "http://localhost:*"}


@pytest.fixture
def chat_stack(
    shared_db_url: str,
    ws_pubsub_host: str,
    firestore_emulator_host: str,
    auth_service_session: AuthService,
    tmp_path: Path,
    start_bridge,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[AgentStack, Bridge, Bridge]]:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", ws_pubsub_host)
    stack = agent_stack(shared_db_url, ws_pubsub_host, firestore_emulator_host, auth_service_session, tmp_path)
    stack.start_worker(MOCK_LLM_TOKEN_DELAY_MS="10")
    stack.start_api()
    env = {**bridge_env(stack, auth_service_session), "AUTH_URL": auth_service_session.url}
    bridges = (start_bridge(**env), start_bridge(**env))
    yield stack, *bridges
    stack.stop()


def test_chat_frame_runs_the_agent_and_streams_the_run(chat_stack, ws_env) -> None:  # noqa: ANN001
    """A `chat` frame is POST /api/agent/message with the user's token: `chat_accepted`, then the run's
    events from agent_started to agent_completed, gapless; the same client_message_id again is an idempotent
    replay; the agent API's errors come back as error frames with its code. A second socket of the user on
    the other instance, subscribed to the thread, sees the same run."""
    stack, a, b = chat_stack
    token, _ = ws_env.user("chat")

    async def run() -> None:
        ws, _ = await connect(a.url, token)
        cmid = f"m-{uuid.uuid4().hex[:8]}"
        await ws.send(
            json.dumps({"type": "chat", "content": "Where does my GPT-4o spend go?", "client_message_id": cmid})
        )
        accepted = await recv(ws, 30)
        assert accepted["type"] == "chat_accepted" and accepted["client_message_id"] == cmid, accepted
        run_id, thread_id = accepted["run_id"], accepted["thread_id"]
        frames = await until(ws, lambda f: f.get("type") in ("agent_completed", "agent_error"), timeout=60)
        events = [f for f in frames if "seq" in f]
        assert events[0]["type"] == "agent_started" and events[-1]["type"] == "agent_completed", events[-1]
        assert seqs(events) == list(range(1, len(events) + 1))
        assert {f["run_id"] for f in events} == {run_id}
        assert [f["type"] for f in frames if "seq" not in f] == ["subscribed"]

        await ws.send(
            json.dumps({"type": "chat", "content": "Where does my GPT-4o spend go?", "client_message_id": cmid})
        )
        again = await recv(ws, 30)
        assert again["type"] == "chat_accepted" and again["run_id"] == run_id and again["replayed"] is True

        failing_id = f"m-{uuid.uuid4().hex[:8]}"
        await ws.send(
            json.dumps(
                {"type": "chat", "thread_id": str(uuid.uuid4()), "content": "hi", "client_message_id": failing_id}
            )
        )
        error = await recv(ws, 30)
        assert error["type"] == "error" and error["code"] == "not_found", error
        assert error["client_message_id"] == failing_id, "the error names the chat it answers"

        other, _ = await connect(b.url, token)
        await other.send(json.dumps({"type": "subscribe", "thread_id": thread_id}))
        assert (await recv(other))["type"] == "subscribed"
        await ws.send(
            json.dumps(
                {
                    "type": "chat",
                    "thread_id": thread_id,
                    "content": "And for Claude?",
                    "client_message_id": f"m-{uuid.uuid4().hex[:8]}",
                }
            )
        )
        second = (await recv(ws, 30))["run_id"]
        for sock in (ws, other):
            got = await until(sock, lambda f: f.get("type") == "agent_completed", timeout=60)
            assert seqs(got, second) == list(range(1, len(seqs(got, second)) + 1)) and seqs(got, second)
        await ws.close()
        await other.close()

    asyncio.run(run())
    assert stack.api is not None


@pytest.fixture
def tight_plan_stack(
    shared_db_url: str,
    ws_pubsub_host: str,
    firestore_emulator_host: str,
    auth_service_session: AuthService,
    tmp_path: Path,
    start_bridge,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[AgentStack, Bridge]]:
    """The agent API alone (no worker: accepted runs stay queued) with a free plan of 2 runs a minute."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", ws_pubsub_host)
    stack = agent_stack(shared_db_url, ws_pubsub_host, firestore_emulator_host, auth_service_session, tmp_path)
    plan = {"runs_per_minute": 2, "concurrent_runs": 100, "usage_rows": None, "monthly_spend_usd": None}
    stack.start_api(PLAN_FREE=json.dumps(plan))
    env = bridge_env(stack, auth_service_session)
    yield stack, start_bridge(**env)
    stack.stop()


def test_chat_over_the_plan_rate_is_an_error_frame_with_retry_after(tight_plan_stack, ws_env) -> None:  # noqa: ANN001
    """The third `chat` of a minute on a 2-runs plan: an error frame with the agent API's code, its words and
    `retry_after_s`; the connection stays open, and another user's chat still goes through."""
    import time

    _, bridge = tight_plan_stack
    left = 60 - time.time() % 60
    if left < 10:  # the three chats must fall in one fixed window
        time.sleep(left + 0.2)
    token, _ = ws_env.user("plan")
    other, _ = ws_env.user("plan-other")

    async def chat(ws, cmid: str) -> dict:  # noqa: ANN001
        await ws.send(json.dumps({"type": "chat", "content": "Which model costs most?", "client_message_id": cmid}))
        return await until(ws, lambda f: f.get("client_message_id") == cmid, timeout=30)

    async def run() -> None:
        ws, _ = await connect(bridge.url, token)
        for _ in range(2):
            answer = (await chat(ws, uuid.uuid4().hex))[-1]
            assert answer["type"] == "chat_accepted", answer
        refused = (await chat(ws, "third"))[-1]
        assert refused["type"] == "error" and refused["code"] == "runs_per_minute_limit", refused
        retry = refused["retry_after_s"]
        assert isinstance(retry, int) and 1 <= retry <= 60
        assert refused["message"] == f"you have used your plan's 2 runs this minute; try again in {retry} s"
        await ws.send(json.dumps({"type": "ping"}))
        assert (await until(ws, lambda f: f.get("type") == "pong"))[-1]["type"] == "pong", "still open"
        await ws.close()
        ws2, _ = await connect(bridge.url, other)
        assert (await chat(ws2, "other"))[-1]["type"] == "chat_accepted"
        await ws2.close()

    asyncio.run(run())
