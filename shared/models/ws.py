"""WebSocket frames between a client and ws_bridge (agent events are sent unchanged, see events.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field


class Subscribe(BaseModel):
    type: Literal["subscribe"]
    thread_id: str = Field(min_length=1, max_length=64)
    run_id: str | None = Field(None, max_length=64)
    after_seq: int | None = Field(None, ge=0)


class Unsubscribe(BaseModel):
    type: Literal["unsubscribe"]
    thread_id: str = Field(min_length=1, max_length=64)


class Chat(BaseModel):
    type: Literal["chat"]
    thread_id: str | None = Field(None, max_length=64)
    content: str = Field(min_length=1, max_length=32_000)
    client_message_id: str = Field(min_length=1, max_length=128)


class Ping(BaseModel):
    type: Literal["ping"]


class Auth(BaseModel):
    type: Literal["auth"]
    token: str = Field(min_length=10, max_length=8192)


ClientFrame = Annotated[Subscribe | Unsubscribe | Chat | Ping | Auth, Field(discriminator="type")]

# Close codes (documented in docs/WEBSOCKET.md).
CLOSE_POLICY = 1008  # bad origin, missing or invalid credentials
CLOSE_RESTART = 1012  # instance shutting down: reconnect (elsewhere) and resubscribe with after_seq
CLOSE_TRY_AGAIN = 1013  # too slow a consumer, or too many connections for this user
CLOSE_TOKEN_EXPIRED = 4001  # the access token expired without an `auth` frame extending it
