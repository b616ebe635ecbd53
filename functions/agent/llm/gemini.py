"""Gemini through the google-genai SDK: the Developer API with a key, or Vertex AI with the service account.

The SDK (and its client) is imported and built on first use, never at module import (cold start).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from functions.agent.llm.base import ProviderError, StreamChunk, transient_status
from functions.agent.pipeline_api import LLMMessage, TokenUsage


def usage_from_gemini(meta: Any) -> TokenUsage:
    """Gemini counts cached tokens inside prompt_token_count; thoughts are separate from candidates."""
    prompt = int(getattr(meta, "prompt_token_count", None) or 0)
    cached = int(getattr(meta, "cached_content_token_count", None) or 0)
    return TokenUsage(
        input_tokens=max(0, prompt - cached),
        cached_input_tokens=cached,
        output_tokens=int(getattr(meta, "candidates_token_count", None) or 0),
        reasoning_tokens=int(getattr(meta, "thoughts_token_count", None) or 0),
    )


class GeminiProvider:
    name = "gemini"

    def __init__(
        self, *, api_key: str | None, vertex: bool, project: str, location: str, base_url: str | None = None
    ) -> None:
        self._api_key = api_key
        self._vertex = vertex
        self._project = project
        self._location = location
        self._base_url = base_url
        self._client: Any = None
        self._lock = threading.Lock()

    def _sdk(self) -> Any:
        with self._lock:
            if self._client is None:
                from google import genai
                from google.genai import types

                # No SDK retries: the chain owns retries, backoff and the breaker.
                options = types.HttpOptions(base_url=self._base_url) if self._base_url else None
                if self._vertex:
                    self._client = genai.Client(
                        vertexai=True, project=self._project, location=self._location, http_options=options
                    )
                else:
                    self._client = genai.Client(api_key=self._api_key, http_options=options)
            return self._client

    def stream(
        self, model: str, messages: list[LLMMessage], *, max_tokens: int | None, timeout_s: float
    ) -> Iterator[StreamChunk]:
        from google.genai import errors, types

        system = "\n\n".join(m.content for m in messages if m.role == "system") or None
        contents = [
            types.Content(role="model" if m.role == "assistant" else "user", parts=[types.Part(text=m.content)])
            for m in messages
            if m.role != "system"
        ]
        config = types.GenerateContentConfig(
            system_instruction=system,
            max_output_tokens=max_tokens,
            http_options=types.HttpOptions(timeout=int(timeout_s * 1000)),
        )
        usage: TokenUsage | None = None
        try:
            for chunk in self._sdk().models.generate_content_stream(model=model, contents=contents, config=config):
                text = _chunk_text(chunk)
                if text:
                    yield StreamChunk(text=text)
                if chunk.usage_metadata is not None:
                    usage = usage_from_gemini(chunk.usage_metadata)
        except errors.APIError as exc:
            code = int(exc.code or 0)
            raise ProviderError(
                self.name,
                f"HTTP {code} from {model}: {str(exc.message or exc)[:300]}",
                transient=code == 0 or transient_status(code),
                status=code or None,
            ) from None
        except Exception as exc:
            import httpx

            if isinstance(exc, httpx.TransportError | TimeoutError):
                raise ProviderError(
                    self.name, f"{model} unreachable or timed out: {type(exc).__name__}", transient=True
                ) from None
            raise
        yield StreamChunk(usage=usage or TokenUsage())


def _chunk_text(chunk: Any) -> str:
    # chunk.text warns (and returns None) when a candidate holds non-text parts; read text parts directly.
    texts = []
    for candidate in chunk.candidates or []:
        content = candidate.content
        for part in content.parts if content and content.parts else []:
            if part.text and not part.thought:
                texts.append(part.text)
    return "".join(texts)
