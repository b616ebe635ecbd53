"""Request bodies and query strings of the agent API (validated by pydantic; 422 lists every problem)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.errors import not_found
from shared.http import StrictBody

MAX_METADATA_BYTES = 16_384


def _small(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    if metadata is not None and len(json.dumps(metadata, default=str)) > MAX_METADATA_BYTES:
        raise ValueError(f"must serialise to at most {MAX_METADATA_BYTES} bytes of JSON")
    return metadata


def path_uuid(value: str, what: str) -> str:
    """A path id that is not a UUID cannot name anything of the caller's: 404, like someone else's id."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise not_found(what) from None


class ThreadIn(StrictBody):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, min_length=1, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)

    _meta = field_validator("metadata")(_small)


class ThreadPatch(StrictBody):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, min_length=1, max_length=200)
    metadata: dict[str, Any] | None = None

    _meta = field_validator("metadata")(_small)

    @model_validator(mode="after")
    def _something(self) -> ThreadPatch:
        if self.title is None and self.metadata is None:
            raise ValueError("give title or metadata")
        return self


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")  # query strings often carry cache busters

    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, max_length=500, description="next_cursor of the previous page; empty: first page")

    @field_validator("cursor")
    @classmethod
    def _empty_is_first_page(cls, value: str | None) -> str | None:
        # ?cursor= is what a client sends when it has no cursor yet: the first page, not an error.
        return value or None


class MessageIn(StrictBody):
    model_config = ConfigDict(extra="forbid")

    thread_id: uuid.UUID | None = None
    content: str = Field(min_length=1, max_length=32_000)
    client_message_id: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class EventsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")  # query strings often carry cache busters

    after_seq: int = Field(0, ge=0, le=2**53 - 1)  # beyond any sequence number; bigint overflowed before (500)
    limit: int = Field(500, ge=1, le=1000)


class CostsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    from_: datetime | date | None = Field(None, alias="from")
    to: datetime | date | None = None
    group_by: Literal["model", "day", "thread"] = "model"

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _iso_only(cls, value: Any) -> Any:
        # pydantic would also read "0.5" as an epoch time; the document promises ISO 8601 dates only.
        if isinstance(value, str) and not re.match(r"^\d{4}-\d{2}-\d{2}", value):
            raise ValueError("must be an ISO 8601 date or date-time, e.g. 2025-11-03 or 2025-11-03T14:05:00Z")
        return value
