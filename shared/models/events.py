"""Agent requests and agent events: the one definition used by the worker, the bridge and the docs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

EventType = Literal[
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "partial_result",
    "agent_completed",
    "agent_error",
    "run_cancelled",
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]
TERMINAL_EVENT_TYPES = frozenset({"agent_completed", "agent_error", "run_cancelled"})


def utcnow() -> datetime:
    return datetime.now(UTC)


class AgentRequest(BaseModel):
    """One message on ``agent-requests``: a run to execute."""

    run_id: str
    thread_id: str
    user_id: str
    message_id: str
    requested_at: datetime = Field(default_factory=utcnow)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class AgentEvent(BaseModel):
    """One event of a run. ``seq`` is gapless per run, starting at 1."""

    type: EventType
    run_id: str
    thread_id: str
    seq: int = Field(ge=1)
    ts: datetime = Field(default_factory=utcnow)
    agent_name: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENT_TYPES

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    def to_frame(self) -> str:
        """The WebSocket frame: the event unchanged."""
        return self.model_dump_json()

    def attributes(self, user_id: str) -> dict[str, str]:
        """Pub/Sub attributes on ``agent-events`` (ordering key = thread id)."""
        return {
            "user_id": user_id,
            "thread_id": self.thread_id,
            "run_id": self.run_id,
            "seq": str(self.seq),
            "type": self.type,
        }

    @classmethod
    def from_bytes(cls, data: bytes) -> AgentEvent:
        return cls.model_validate(json.loads(data))
