"""One message on ``usage-rollups``: refresh the precomputed analyses of a user whose records streamed in."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from shared.models.events import utcnow

KIND = "usage_rollup"  # the message's ``kind`` attribute, so the worker tells it from a run request


class RollupRequest(BaseModel):
    user_id: str = Field(..., pattern=r"^[0-9a-fA-F-]{36}$")
    data_version: int = Field(..., ge=0, description="the version that asked; a refresh at or past it suffices")
    requested_at: datetime = Field(default_factory=utcnow)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()
