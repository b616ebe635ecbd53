"""The provider interface every LLM adapter implements, and the error type the chain understands."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from functions.agent.pipeline_api import LLMMessage, TokenUsage
from shared.errors import NetraError


@dataclass
class StreamChunk:
    """A piece of a streamed answer: text, and (on the last chunk, usually) the call's usage."""

    text: str = ""
    usage: TokenUsage | None = None


class ProviderError(NetraError):
    """A failed call. ``transient`` errors (timeouts, 429, 5xx, connection) are retried; others are not."""

    def __init__(self, provider: str, message: str, *, transient: bool, status: int | None = None) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.transient = transient
        self.status = status


def transient_status(status: int) -> bool:
    return status in (408, 409, 425, 429) or status >= 500


class Provider(Protocol):
    name: str

    def stream(
        self, model: str, messages: list[LLMMessage], *, max_tokens: int | None, timeout_s: float
    ) -> Iterator[StreamChunk]:
        """Yield the answer as it is generated; the last chunk carries the usage. Raise ProviderError."""
        ...
