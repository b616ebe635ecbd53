"""The mock provider: deterministic answers that stream token by token, with usage in every bucket.

It is the default locally and in tests. Failure is injected through the model name so that a test (or a
developer) can exercise retries, the breaker and the fallback chain with configuration alone:
a model whose name contains ``fail`` always fails with a transient error, ``bad`` with a permanent one
(HTTP 400), and ``slow`` never answers within the timeout.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator

from functions.agent.llm.base import ProviderError, StreamChunk
from functions.agent.pipeline_api import LLMMessage, TokenUsage

_OPENINGS = (
    "Here is what stands out",
    "Looking at this request",
    "Based on the figures available",
    "A short analysis",
)
_POINTS = (
    "route simple classification prompts to a smaller model",
    "cache the shared system prompt so repeated prefixes are billed at the cached rate",
    "cap max_tokens where answers are short, since output tokens cost the most",
    "batch non-interactive work to the batch API at half price",
    "trim conversation history that the model no longer needs",
)


def estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def mock_answer(model: str, messages: list[LLMMessage]) -> str:
    question = next((m.content for m in reversed(messages) if m.role == "user"), "")
    digest = hashlib.sha256(f"{model}\n{question}".encode()).digest()
    opening = _OPENINGS[digest[0] % len(_OPENINGS)]
    first, second = digest[1] % len(_POINTS), digest[2] % len(_POINTS)
    if second == first:
        second = (first + 1) % len(_POINTS)
    topic = " ".join(question.split()[:12]) or "your workload"
    return (
        f'{opening} ({model}) about "{topic}": first, {_POINTS[first]}; second, {_POINTS[second]}. '
        f"Each step is priced in the report below."
    )


class MockProvider:
    name = "mock"

    def __init__(self, token_delay_ms: float = 0.0) -> None:
        self.token_delay_s = token_delay_ms / 1000.0

    def stream(
        self, model: str, messages: list[LLMMessage], *, max_tokens: int | None, timeout_s: float
    ) -> Iterator[StreamChunk]:
        if "bad" in model:
            raise ProviderError(
                self.name, f"model {model!r} rejected the request (HTTP 400)", transient=False, status=400
            )
        if "fail" in model:
            raise ProviderError(self.name, f"model {model!r} is unavailable (HTTP 503)", transient=True, status=503)
        if "slow" in model:
            time.sleep(timeout_s)
            raise ProviderError(self.name, f"model {model!r} did not answer within {timeout_s:g}s", transient=True)
        words = mock_answer(model, messages).split(" ")
        tokens = [w + " " for w in words[:-1]] + [words[-1]]
        if max_tokens is not None:
            tokens = tokens[: max(1, max_tokens)]
        for token in tokens:
            if self.token_delay_s:
                time.sleep(self.token_delay_s)
            yield StreamChunk(text=token)
        yield StreamChunk(usage=self.usage(model, messages, len(tokens)))

    @staticmethod
    def usage(model: str, messages: list[LLMMessage], output_tokens: int) -> TokenUsage:
        prompt = sum(estimate_tokens(m.content) + 4 for m in messages)
        # Pretend everything but the newest message was a cached prefix, as a provider with prompt caching would.
        cached = prompt - (estimate_tokens(messages[-1].content) + 4) if len(messages) > 1 else 0
        reasoning = output_tokens // 3 if "pro" in model else 0
        return TokenUsage(
            input_tokens=prompt - cached,
            cached_input_tokens=cached,
            cache_write_tokens=prompt // 10 if "cache" in model else 0,
            output_tokens=output_tokens,
            reasoning_tokens=reasoning,
        )
