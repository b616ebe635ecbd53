"""LLM access: the real adapters (httpx for OpenAI-compatible, google-genai for Gemini) against local HTTP
stand-ins of each wire format, the fallback chain, retries, the per-provider breaker, and the mock provider.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from functions.agent.llm.base import ProviderError
from functions.agent.llm.chain import FallbackChain, LLMUnavailable
from functions.agent.llm.gemini import GeminiProvider
from functions.agent.llm.mock import MockProvider
from functions.agent.llm.openai_compat import OpenAICompatProvider
from functions.agent.pipeline_api import LLMMessage, TokenUsage
from functions.agent.settings import AgentSettings
from shared.config import ConfigError, load_settings
from tests.agent.standins import ANSWER, StandIn

MESSAGES = [LLMMessage("system", "Be brief."), LLMMessage("user", "How do I cut my LLM bill?")]


@pytest.fixture
def standin() -> Iterator[StandIn]:
    server = StandIn().start()
    yield server
    server.stop()


def _chain(standin: StandIn, models: list[tuple[str, str]], **kwargs: float) -> FallbackChain:
    providers = {
        "openai": OpenAICompatProvider(standin.url + "/v1", api_key="sk-test-key"),
        "gemini": GeminiProvider(api_key="gm-test-key", vertex=False, project="p", location="l", base_url=standin.url),
        "mock": MockProvider(),
    }
    options = {
        "timeout_s": 5.0,
        "max_attempts": 3,
        "retry_initial_s": 0.01,
        "breaker_threshold": 3,
        "breaker_recovery_s": 30.0,
        **kwargs,
    }
    return FallbackChain(providers, models, **options)  # type: ignore[arg-type]


def test_openai_adapter_streams_and_splits_usage(standin: StandIn) -> None:
    provider = OpenAICompatProvider(standin.url + "/v1", api_key="sk-test-key")
    chunks = list(provider.stream("gpt-4o-mini", MESSAGES, max_tokens=64, timeout_s=5))
    assert [c.text for c in chunks if c.text] == ANSWER
    # 120 prompt of which 100 cached; 30 completion of which 12 reasoning.
    assert chunks[-1].usage == TokenUsage(
        input_tokens=20, cached_input_tokens=100, output_tokens=18, reasoning_tokens=12
    )
    request = standin.requests[-1]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test-key"
    assert request["body"]["stream"] is True and request["body"]["stream_options"] == {"include_usage": True}
    assert request["body"]["max_tokens"] == 64
    assert request["body"]["messages"][0] == {"role": "system", "content": "Be brief."}


def test_gemini_adapter_through_google_genai(standin: StandIn) -> None:
    provider = GeminiProvider(api_key="gm-test-key", vertex=False, project="p", location="l", base_url=standin.url)
    chunks = list(provider.stream("gemini-2.5-flash", MESSAGES, max_tokens=64, timeout_s=5))
    assert "".join(c.text for c in chunks) == "".join(ANSWER)
    assert chunks[-1].usage == TokenUsage(
        input_tokens=50, cached_input_tokens=150, output_tokens=40, reasoning_tokens=25
    )
    request = standin.requests[-1]
    assert "/models/gemini-2.5-flash:streamGenerateContent" in request["path"]
    assert request["headers"].get("x-goog-api-key") == "gm-test-key"
    # System messages become the system instruction, not a turn.
    assert request["body"]["systemInstruction"]["parts"][0]["text"] == "Be brief."
    assert [c["role"] for c in request["body"]["contents"]] == ["user"]
    assert request["body"]["generationConfig"]["maxOutputTokens"] == 64


def test_gemini_error_is_classified(standin: StandIn) -> None:
    provider = GeminiProvider(api_key="k", vertex=False, project="p", location="l", base_url=standin.url)
    with pytest.raises(ProviderError) as transient:
        list(provider.stream("gemini-fail", MESSAGES, max_tokens=None, timeout_s=5))
    assert transient.value.transient and transient.value.status == 503
    with pytest.raises(ProviderError) as permanent:
        list(provider.stream("gemini-bad", MESSAGES, max_tokens=None, timeout_s=5))
    assert not permanent.value.transient and permanent.value.status == 400


def test_fallback_to_the_next_model(standin: StandIn) -> None:
    chain = _chain(standin, [("openai", "gpt-fail"), ("gemini", "gemini-ok")])
    tokens: list[str] = []
    outcome = chain.complete(MESSAGES, on_token=tokens.append)
    assert (outcome.provider, outcome.model) == ("gemini", "gemini-ok")
    assert "".join(tokens) == outcome.text == "".join(ANSWER)
    assert len(outcome.fallbacks) == 1 and outcome.fallbacks[0].startswith("openai:gpt-fail")
    assert standin.seen_models["gpt-fail"] == 3  # transient: retried up to max_attempts


def test_transient_error_is_retried(standin: StandIn) -> None:
    outcome = _chain(standin, [("openai", "gpt-flaky")]).complete(MESSAGES)
    assert outcome.attempts == 2 and outcome.provider == "openai" and not outcome.fallbacks


def test_permanent_error_is_not_retried(standin: StandIn) -> None:
    outcome = _chain(standin, [("openai", "gpt-bad"), ("mock", "mock-flash")]).complete(MESSAGES)
    assert standin.seen_models["gpt-bad"] == 1
    assert outcome.provider == "mock"


def test_breaker_opens_per_provider_and_skips_it(standin: StandIn) -> None:
    chain = _chain(standin, [("openai", "gpt-fail"), ("mock", "mock-flash")], breaker_threshold=2, max_attempts=1)
    chain.complete(MESSAGES)
    chain.complete(MESSAGES)
    assert chain.snapshot()["openai"]["state"] == "open"
    calls_before = standin.seen_models["gpt-fail"]
    outcome = chain.complete(MESSAGES)
    assert standin.seen_models["gpt-fail"] == calls_before  # not called while open
    assert outcome.provider == "mock" and "circuit breaker open" in outcome.fallbacks[0]
    assert chain.snapshot()["mock"]["state"] == "closed"


def test_every_model_failing_raises_llm_unavailable(standin: StandIn) -> None:
    chain = _chain(standin, [("openai", "gpt-fail"), ("gemini", "gemini-fail"), ("mock", "mock-fail")])
    with pytest.raises(LLMUnavailable) as info:
        chain.complete(MESSAGES)
    assert [f.split(":")[0] for f in info.value.failures] == ["openai", "gemini", "mock"]


def test_stream_cut_midway_restarts_cleanly(standin: StandIn) -> None:
    chain = _chain(standin, [("openai", "gpt-cut"), ("mock", "mock-flash")], max_attempts=2)
    received: list[str] = []
    restarts: list[int] = []

    def on_restart() -> None:
        restarts.append(len(received))
        received.clear()

    outcome = chain.complete(MESSAGES, on_token=received.append, on_restart=on_restart)
    assert outcome.provider == "mock"
    assert len(restarts) == 2 and all(n > 0 for n in restarts)  # after each partial stream
    assert "".join(received) == outcome.text


def test_mock_provider_is_deterministic_and_fills_buckets() -> None:
    mock = MockProvider()
    first = list(mock.stream("mock-pro", MESSAGES, max_tokens=None, timeout_s=1))
    second = list(mock.stream("mock-pro", MESSAGES, max_tokens=None, timeout_s=1))
    assert first == second and len([c for c in first if c.text]) > 5
    usage = first[-1].usage
    assert usage is not None and usage.input_tokens > 0 and usage.cached_input_tokens > 0
    assert usage.output_tokens > 0 and usage.reasoning_tokens > 0
    capped = list(mock.stream("mock-pro", MESSAGES, max_tokens=3, timeout_s=1))
    assert len([c for c in capped if c.text]) == 3
    with pytest.raises(ProviderError) as slow:
        list(mock.stream("mock-slow", MESSAGES, max_tokens=None, timeout_s=0.05))
    assert slow.value.transient


def test_llm_settings_errors_name_the_variable() -> None:
    base = {"NETRA_ENV": "test", "DATABASE_URL": "postgresql://u:p@127.0.0.1:5432/db"}
    with pytest.raises(ConfigError) as bad_chain:
        load_settings(AgentSettings, {**base, "LLM_MODELS": "mock-pro,acme:x"})
    assert any(p.startswith("LLM_MODELS:") for p in bad_chain.value.problems)
    with pytest.raises(ConfigError) as no_key:
        load_settings(AgentSettings, {**base, "LLM_MODELS": "gemini:gemini-2.5-flash"})
    assert any(p.startswith("GEMINI_API_KEY:") for p in no_key.value.problems)
    settings = load_settings(AgentSettings, {**base, "LLM_MODELS": "gemini:g, openai:o", "GEMINI_VERTEX": "true"})
    assert settings.model_chain == [("gemini", "g"), ("openai", "o")]
