"""The ordered fallback chain: each model in turn, with retries and backoff for transient errors, a
circuit breaker per provider, and one overall answer (or LLMUnavailable when every model failed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from functions.agent.llm.base import Provider, ProviderError
from functions.agent.pipeline_api import LLMMessage, TokenUsage
from shared.errors import NetraError
from shared.startup import CircuitBreaker

if TYPE_CHECKING:
    from functions.agent.settings import AgentSettings

log = logging.getLogger("llm")


class LLMUnavailable(NetraError):
    """Every model of the chain failed; ``failures`` lists "provider:model: reason" per model."""

    def __init__(self, failures: list[str]) -> None:
        super().__init__("every model of the fallback chain failed: " + "; ".join(failures))
        self.failures = failures


@dataclass
class CallOutcome:
    """One successful call: the text, where it came from, its usage and timing."""

    text: str
    provider: str
    model: str
    usage: TokenUsage
    latency_ms: float
    attempts: int
    fallbacks: list[str] = field(default_factory=list)  # "provider:model: reason" of models skipped


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.transient


class FallbackChain:
    def __init__(
        self,
        providers: dict[str, Provider],
        models: list[tuple[str, str]],
        *,
        timeout_s: float,
        max_attempts: int,
        retry_initial_s: float,
        breaker_threshold: int,
        breaker_recovery_s: float,
    ) -> None:
        unknown = [p for p, _ in models if p not in providers]
        if unknown:
            raise ValueError(f"no provider configured for: {', '.join(unknown)}")
        self.providers = providers
        self.models = models
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.retry_initial_s = retry_initial_s
        self.breakers = {
            name: CircuitBreaker(f"llm:{name}", breaker_threshold, breaker_recovery_s) for name in providers
        }

    def complete(
        self,
        messages: list[LLMMessage],
        *,
        on_token: Callable[[str], None] | None = None,
        on_restart: Callable[[], None] | None = None,
        max_tokens: int | None = None,
    ) -> CallOutcome:
        failures: list[str] = []
        streamed = {"any": False}

        def restart() -> None:
            if streamed["any"] and on_restart is not None:
                on_restart()
            streamed["any"] = False

        for provider_name, model in self.models:
            breaker = self.breakers[provider_name]
            if not breaker.allow():
                failures.append(
                    f"{provider_name}:{model}: circuit breaker open (retry in {breaker.retry_after():.0f}s)"
                )
                continue
            attempts = {"n": 0}

            def before_sleep(state: RetryCallState, provider_name: str = provider_name, model: str = model) -> None:
                log.warning(
                    "LLM call failed, retrying",
                    extra={
                        "provider": provider_name,
                        "model": model,
                        "attempt": state.attempt_number,
                        "reason": str(state.outcome.exception() if state.outcome else "")[:200],
                    },
                )

            try:
                for attempt in Retrying(
                    stop=stop_after_attempt(self.max_attempts),
                    wait=wait_random_exponential(multiplier=self.retry_initial_s, max=10.0),
                    retry=retry_if_exception(_transient),
                    reraise=True,
                    before_sleep=before_sleep,
                ):
                    with attempt:
                        attempts["n"] += 1
                        if attempts["n"] > 1 and not breaker.allow():
                            raise ProviderError(provider_name, "circuit breaker opened during retries", transient=False)
                        restart()
                        outcome = self._call_once(
                            provider_name, model, messages, on_token, max_tokens, streamed, breaker
                        )
                        outcome.attempts = attempts["n"]
                        outcome.fallbacks = failures
                        return outcome
            except ProviderError as exc:
                failures.append(f"{provider_name}:{model}: {exc}")
                log.warning(
                    "LLM model failed, falling back",
                    extra={"provider": provider_name, "model": model, "reason": str(exc)[:300]},
                )
        raise LLMUnavailable(failures)

    def _call_once(
        self,
        provider_name: str,
        model: str,
        messages: list[LLMMessage],
        on_token: Callable[[str], None] | None,
        max_tokens: int | None,
        streamed: dict[str, bool],
        breaker: CircuitBreaker,
    ) -> CallOutcome:
        provider = self.providers[provider_name]
        started = time.perf_counter()
        parts: list[str] = []
        usage: TokenUsage | None = None
        try:
            for chunk in provider.stream(model, messages, max_tokens=max_tokens, timeout_s=self.timeout_s):
                if chunk.text:
                    parts.append(chunk.text)
                    if on_token is not None:
                        streamed["any"] = True
                        on_token(chunk.text)
                if chunk.usage is not None:
                    usage = chunk.usage
        except ProviderError as exc:
            if exc.transient:
                breaker.record_failure()
            raise
        except Exception as exc:  # an SDK error we did not classify: treat as transient, keep the type name
            breaker.record_failure()
            raise ProviderError(provider_name, f"{type(exc).__name__}: {str(exc)[:200]}", transient=True) from exc
        breaker.record_success()
        return CallOutcome(
            text="".join(parts),
            provider=provider_name,
            model=model,
            usage=usage or TokenUsage(),
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
            attempts=1,
        )

    def snapshot(self) -> dict[str, Any]:
        return {name: breaker.snapshot() for name, breaker in self.breakers.items()}


_chain: FallbackChain | None = None
_chain_lock = threading.Lock()


def build_providers(settings: AgentSettings) -> dict[str, Provider]:
    """One instance of each provider named in the chain (clients are still created lazily)."""
    from functions.agent.llm.mock import MockProvider

    names = {p for p, _ in settings.model_chain}
    providers: dict[str, Provider] = {}
    if "mock" in names:
        providers["mock"] = MockProvider(settings.mock_llm_token_delay_ms)
    if "openai" in names:
        from functions.agent.llm.openai_compat import OpenAICompatProvider

        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        providers["openai"] = OpenAICompatProvider(settings.openai_base_url, key)
    if "gemini" in names:
        from functions.agent.llm.gemini import GeminiProvider

        key = settings.gemini_api_key.get_secret_value() if settings.gemini_api_key else None
        providers["gemini"] = GeminiProvider(
            api_key=key,
            vertex=settings.gemini_vertex,
            project=settings.google_cloud_project,
            location=settings.gemini_location,
            base_url=settings.gemini_base_url,
        )
    return providers


def get_chain(settings: AgentSettings) -> FallbackChain:
    """The instance's chain, built once: breakers must outlive a single run to be of any use."""
    global _chain
    with _chain_lock:
        if _chain is None:
            _chain = FallbackChain(
                build_providers(settings),
                settings.model_chain,
                timeout_s=settings.llm_timeout_s,
                max_attempts=settings.llm_max_attempts,
                retry_initial_s=settings.llm_retry_initial_s,
                breaker_threshold=settings.llm_breaker_threshold,
                breaker_recovery_s=settings.llm_breaker_recovery_s,
            )
        return _chain
