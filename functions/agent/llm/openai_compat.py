"""Any OpenAI-compatible chat completions endpoint (OpenAI, Ollama, vLLM, LiteLLM) chosen by base URL.

Spoken over plain httpx rather than the openai SDK: the wire format we need is one streaming POST, and
httpx is already loaded by the platform. Streaming uses ``stream_options.include_usage`` so the last
chunk carries the call's usage; servers that do not send usage get an estimate (flagged in the logs).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx

from functions.agent.llm.base import ProviderError, StreamChunk, transient_status
from functions.agent.llm.mock import estimate_tokens
from functions.agent.pipeline_api import LLMMessage, TokenUsage

log = logging.getLogger("llm.openai")


def usage_from_openai(usage: dict[str, Any]) -> TokenUsage:
    """OpenAI counts cached tokens inside prompt_tokens and reasoning inside completion_tokens; split them."""
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    reasoning = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    return TokenUsage(
        input_tokens=max(0, prompt - cached),
        cached_input_tokens=cached,
        output_tokens=max(0, completion - reasoning),
        reasoning_tokens=reasoning,
    )


class OpenAICompatProvider:
    name = "openai"

    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
                self._client = httpx.Client(headers=headers, trust_env=False)
            return self._client

    def stream(
        self, model: str, messages: list[LLMMessage], *, max_tokens: int | None, timeout_s: float
    ) -> Iterator[StreamChunk]:
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        deadline = time.monotonic() + timeout_s
        timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
        usage: TokenUsage | None = None
        produced: list[str] = []
        finished = False
        try:
            with self._http().stream(
                "POST", f"{self.base_url}/chat/completions", json=body, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    detail = response.read().decode(errors="replace")[:300]
                    raise ProviderError(
                        self.name,
                        f"HTTP {response.status_code} from {model}: {detail}",
                        transient=transient_status(response.status_code),
                        status=response.status_code,
                    )
                for line in response.iter_lines():
                    if time.monotonic() > deadline:
                        raise ProviderError(self.name, f"{model} did not finish within {timeout_s:g}s", transient=True)
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        finished = True
                        break
                    try:
                        event = json.loads(payload)
                    except ValueError:
                        raise ProviderError(self.name, "malformed stream chunk", transient=True) from None
                    if event.get("error"):
                        raise ProviderError(self.name, str(event["error"])[:300], transient=True)
                    for choice in event.get("choices") or []:
                        finished = finished or bool(choice.get("finish_reason"))
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            produced.append(text)
                            yield StreamChunk(text=text)
                    if event.get("usage"):
                        usage = usage_from_openai(event["usage"])
        except httpx.TimeoutException as exc:
            raise ProviderError(self.name, f"{model} timed out: {type(exc).__name__}", transient=True) from None
        except httpx.TransportError as exc:
            raise ProviderError(
                self.name, f"cannot reach {self.base_url}: {type(exc).__name__}", transient=True
            ) from None
        if not finished:
            # A connection closed mid-answer looks like a normal end of stream to the HTTP layer.
            raise ProviderError(self.name, f"{model} stream ended before the answer was complete", transient=True)
        if usage is None:
            log.warning("endpoint sent no usage; estimating it", extra={"model": model})
            prompt = sum(estimate_tokens(m.content) for m in messages)
            usage = TokenUsage(input_tokens=prompt, output_tokens=estimate_tokens("".join(produced)))
        yield StreamChunk(usage=usage)
