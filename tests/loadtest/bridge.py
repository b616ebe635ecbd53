"""The bridge's side of the storm and of the first-event figure: sign-in, frames, and how a run is started.

Protocol: docs/WEBSOCKET.md. Auth by the `jwt-auth` + `jwt.<base64url token>` subprotocols (what browsers use);
one thread per user; a run is started by `POST /api/agent/message` on the agent API, and its events reach the
sockets subscribed to the thread through the worker, Pub/Sub and the bridge.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection

from shared.models.events import EVENT_TYPES, TERMINAL_EVENT_TYPES
from tests.loadtest.client import new_client, request_json, simulated_client_ip
from tests.loadtest.context import RunContext
from tests.loadtest.instances import Instance

PER_USER_DEFAULT = 20  # functions/ws_bridge/settings.py max_connections_per_user


@dataclass
class User:
    token: str
    thread_id: str


def subprotocols(token: str) -> list[str]:
    encoded = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
    return ["jwt-auth", f"jwt.{encoded}"]


async def sign_in_users(urls: dict[str, str], count: int, give_up_s: float) -> list[User]:
    """``count`` users, each signed in through dev login with a thread of their own."""
    give_up_at = time.monotonic() + give_up_s
    gate = asyncio.Semaphore(8)

    async def one(client: httpx.AsyncClient) -> User:
        async with gate:
            headers = {"X-Forwarded-For": simulated_client_ip()}
            body = await request_json(
                client,
                "POST",
                f"{urls['auth']}/auth/dev/login",
                headers=headers,
                json={"email": f"storm-{uuid.uuid4().hex[:12]}@example.com"},
                give_up_at=give_up_at,
            )
            token = str(body["access_token"])
            thread = await request_json(
                client,
                "POST",
                f"{urls['agent-api']}/api/threads",
                json={"title": "storm"},
                headers={"Authorization": f"Bearer {token}"},
                give_up_at=give_up_at,
            )
            return User(token, str(thread["id"]))

    async with new_client(8) as client:
        return list(await asyncio.gather(*(one(client) for _ in range(count))))


async def post_message(client: httpx.AsyncClient, agent_url: str, user: User, give_up_at: float) -> str:
    body = await request_json(
        client,
        "POST",
        f"{agent_url}/api/agent/message",
        json={"thread_id": user.thread_id, "content": "load test: where does my spend go?"},
        headers={"Authorization": f"Bearer {user.token}"},
        give_up_at=give_up_at,
    )
    return str(body["run_id"])


async def wait_frame(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next frame of ``kind``; an ``error`` frame on the way is raised with its code."""
    while True:
        frame = json.loads(await ws.recv())
        if frame.get("type") == kind:
            return frame
        if frame.get("type") == "error":
            raise RuntimeError(f"error frame {frame.get('code')}: {frame.get('message')}")


class BridgeProtocol:
    """The storm against the real bridge: clients spread over users (each user has a connection cap)."""

    def __init__(self, ctx: RunContext, users: list[User]) -> None:
        self.ctx = ctx
        self.users = users
        self.threads = {u.thread_id for u in users}

    def user(self, index: int) -> User:
        return self.users[index % len(self.users)]

    def connect_args(self, inst: Instance, index: int) -> tuple[str, dict[str, Any]]:
        return f"{inst.ws_url}/ws", {"subprotocols": subprotocols(self.user(index).token)}

    async def subscribe(self, ws: ClientConnection, index: int) -> None:
        await wait_frame(ws, "connection_established")
        await ws.send(json.dumps({"type": "subscribe", "thread_id": self.user(index).thread_id}))
        await wait_frame(ws, "subscribed")

    async def trigger(self, inst: Instance) -> None:
        """One message per user, all at once: every socket of the user receives that run's events."""
        give_up_at = time.monotonic() + self.ctx.sizes.give_up_s
        async with new_client(len(self.users)) as client:
            await asyncio.gather(
                *(post_message(client, self.ctx.stack_urls["agent-api"], u, give_up_at) for u in self.users)
            )

    def is_event(self, frame: dict[str, Any]) -> bool:
        return frame.get("type") in EVENT_TYPES and frame.get("thread_id") in self.threads

    def is_terminal(self, frame: dict[str, Any]) -> bool:
        return frame.get("type") in TERMINAL_EVENT_TYPES


def missing_services(ctx: RunContext) -> list[str]:
    return [n for n in ("auth", "agent-api", "agent-worker") if n not in ctx.stack_urls]


async def storm_protocol(ctx: RunContext) -> BridgeProtocol | str:
    missing = missing_services(ctx)
    if missing:
        return f"the storm needs {', '.join(missing)} on the warm stack, which did not start"
    per_user = int(ctx.env.get("MAX_CONNECTIONS_PER_USER", PER_USER_DEFAULT))
    users = await sign_in_users(ctx.stack_urls, math.ceil(ctx.sizes.storm_clients / per_user), ctx.sizes.give_up_s)
    return BridgeProtocol(ctx, users)
