"""WebSocket frames between a client and ws_bridge (agent events are sent unchanged, see events.py).

Protocol, close codes and error codes: docs/WEBSOCKET.md.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

# -- client -> server -------------------------------------------------------------------------------------


class Subscribe(BaseModel):
    """Live events of a thread; with ``after_seq`` (and optionally ``run_id``) first the missed ones."""

    type: Literal["subscribe"]
    thread_id: str = Field(min_length=1, max_length=64)
    run_id: str | None = Field(None, min_length=1, max_length=64)
    after_seq: int | None = Field(None, ge=0)


class Unsubscribe(BaseModel):
    type: Literal["unsubscribe"]
    thread_id: str = Field(min_length=1, max_length=64)


class Chat(BaseModel):
    """Same body and semantics as POST /api/agent/message (idempotent by client_message_id)."""

    type: Literal["chat"]
    thread_id: str | None = Field(None, max_length=64)
    content: str = Field(min_length=1, max_length=32_000)
    client_message_id: str = Field(min_length=1, max_length=128)


class Ping(BaseModel):
    type: Literal["ping"]


class Auth(BaseModel):
    """A fresh access token of the same user, sent before the current one expires."""

    type: Literal["auth"]
    token: str = Field(min_length=10, max_length=8192)


ClientFrame = Annotated[Subscribe | Unsubscribe | Chat | Ping | Auth, Field(discriminator="type")]

# -- server -> client (besides the AgentEvent frames) ------------------------------------------------------


class ConnectionEstablished(BaseModel):
    type: Literal["connection_established"]
    connection_id: str
    user_id: str
    server_time: str
    heartbeat_interval: float


class Subscribed(BaseModel):
    type: Literal["subscribed"]
    thread_id: str
    replayed: int


class Unsubscribed(BaseModel):
    type: Literal["unsubscribed"]
    thread_id: str


class Pong(BaseModel):
    type: Literal["pong"]
    server_time: str


class AuthOk(BaseModel):
    type: Literal["auth_ok"]
    expires_at: int


class ChatAccepted(BaseModel):
    """The agent API's 202 body plus the frame's client_message_id."""

    type: Literal["chat_accepted"]
    client_message_id: str
    run_id: str
    thread_id: str
    message_id: str
    status: str
    replayed: bool = False


class Error(BaseModel):
    type: Literal["error"]
    code: str
    message: str
    # Set on the errors that answer a `chat` frame, so a client with several chats in flight knows which failed.
    client_message_id: str | None = None
    # Set when the refusal is temporary (a plan's rate or concurrency limit): seconds before trying again.
    retry_after_s: int | None = None


ServerFrame = Annotated[
    ConnectionEstablished | Subscribed | Unsubscribed | Pong | AuthOk | ChatAccepted | Error,
    Field(discriminator="type"),
]

# Error codes of `error` frames (the connection stays open), except the agent API's own codes for `chat`.
ERROR_CODES: dict[str, str] = {
    "invalid_json": "the frame is not JSON",
    "unknown_frame": "unknown or missing `type`",
    "invalid_frame": "a field is missing or invalid (the message names it)",
    "frame_too_large": "over MAX_FRAME_BYTES",
    "rate_limited": "over MAX_FRAMES_PER_MINUTE",
    "too_many_pending": "too many subscribe/chat frames in progress on this connection",
    "too_many_connections": "over MAX_CONNECTIONS_PER_USER (sent just before a 1013 close)",
    "thread_not_found": "not a thread of this user",
    "unavailable": "ownership could not be checked (database unavailable); retry",
    "replay_unavailable": "the event log could not be read; subscribe again",
    "chat_requires_token": "a ticket connection sends an `auth` frame before chatting",
    "agent_unavailable": "the agent API is unreachable; retry with the same client_message_id",
    "chat_failed": "the agent API refused the chat without an error code of its own (its code is passed through)",
    "invalid_token": "an `auth` frame with a bad token, or another user's",
    "auth_unavailable": "token keys could not be fetched; retry",
    "binary_not_supported": "binary frames are not accepted",
    "internal": "the frame could not be handled",
}

# Close codes.
CLOSE_POLICY = 1008  # bad origin, missing or invalid credentials, used ticket
CLOSE_TOO_BIG = 1009  # a frame over 4x MAX_FRAME_BYTES (closed by the protocol layer)
CLOSE_PING_TIMEOUT = 1011  # no pong within a heartbeat interval
CLOSE_RESTART = 1012  # instance shutting down: reconnect (elsewhere) and resubscribe with after_seq
CLOSE_TRY_AGAIN = 1013  # starting, at capacity, too many connections for this user, or too slow a consumer
CLOSE_TOKEN_EXPIRED = 4001  # the access token expired without an `auth` frame extending it
