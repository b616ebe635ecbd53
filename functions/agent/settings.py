"""The agent service's settings (API and worker share one class): shared sections plus the agent's own."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from shared.config import CommonSection, DatabaseSection, TokenVerifySection
from shared.plans import PlansSection

LLM_PROVIDERS = ("mock", "gemini", "openai")


def parse_model_chain(raw: str) -> list[tuple[str, str]]:
    """``"mock:mock-pro, openai:gpt-4o-mini"`` -> [("mock", "mock-pro"), ("openai", "gpt-4o-mini")]."""
    chain = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        provider, sep, model = item.partition(":")
        if not sep or not model.strip() or provider.strip() not in LLM_PROVIDERS:
            raise ValueError(f"entry {item!r} must be provider:model with provider one of {', '.join(LLM_PROVIDERS)}")
        chain.append((provider.strip(), model.strip()))
    if not chain:
        raise ValueError("must name at least one provider:model")
    return chain


class AgentSection(BaseSettings):
    """Runs: how long they may take, how the worker claims them, how requests are published."""

    agent_pipeline: str = Field(
        "auto",
        description="auto (functions.agent.intelligence.pipeline:run if present, else the minimal pipeline), "
        "minimal, or module.path:function",
    )
    run_time_budget_s: float = Field(
        120.0, gt=0, le=500, description="seconds a run may take from its creation before it fails, e.g. 120"
    )
    run_lease_s: float = Field(
        30.0,
        ge=2,
        le=300,
        description="seconds without a heartbeat after which a running run's worker is presumed dead, e.g. 30",
    )
    max_concurrent_runs: int = Field(
        4, ge=1, le=64, description="runs one worker instance executes at once; more deliveries are retried later"
    )
    run_slot_wait_s: float = Field(
        10.0,
        ge=0,
        le=300,
        description="seconds a delivery waits for a free run slot before it is refused (429) for redelivery; "
        "smooths a burst on one instance (0 refuses at once)",
    )
    publish_timeout_s: float = Field(
        5.0, gt=0, le=60, description="seconds POST /api/agent/message waits for Pub/Sub before answering 503"
    )
    event_ttl_days: int = Field(7, ge=1, le=30, description="days the Firestore event log of a run is kept, e.g. 7")
    history_messages: int = Field(
        20, ge=0, le=200, description="earlier messages of the thread given to the pipeline, e.g. 20"
    )
    prices_refresh: bool = Field(
        False,
        description="fetch newer list prices (genai-prices' published data) in a background thread; never blocks "
        "a request or a start. Off: the prices bundled with the installed genai-prices",
    )
    prices_refresh_interval_s: float = Field(
        86400.0, ge=600, le=604800, description="seconds between two price fetches when PRICES_REFRESH is on"
    )
    prices_refresh_url: str = Field(
        "", description="where the price data is fetched from; empty: the genai-prices project's published file"
    )

    @field_validator("agent_pipeline")
    @classmethod
    def _pipeline(cls, value: str) -> str:
        value = value.strip()
        if value in ("auto", "minimal"):
            return value
        module, sep, func = value.partition(":")
        if not sep or not module or not func.isidentifier():
            raise ValueError("must be auto, minimal, or module.path:function")
        return value


class LLMSection(BaseSettings):
    """LLM providers and the ordered fallback chain of models."""

    llm_models: str = Field(
        "mock:mock-pro,mock:mock-flash",
        description="ordered fallback chain, comma-separated provider:model with provider mock, gemini or "
        "openai, e.g. gemini:gemini-2.5-flash,openai:gpt-4o-mini",
    )
    llm_timeout_s: float = Field(60.0, gt=0, le=600, description="seconds one LLM call may take, e.g. 60")
    llm_max_attempts: int = Field(
        3, ge=1, le=10, description="attempts per model (transient errors only) before the next model, e.g. 3"
    )
    llm_retry_initial_s: float = Field(0.5, ge=0, le=30, description="first retry delay in seconds, e.g. 0.5")
    llm_breaker_threshold: int = Field(
        3, ge=1, le=100, description="consecutive failed calls that open a provider's circuit breaker, e.g. 3"
    )
    llm_breaker_recovery_s: float = Field(
        30.0, gt=0, le=3600, description="seconds an open provider breaker waits before a trial call, e.g. 30"
    )
    mock_llm_token_delay_ms: float = Field(
        0.0, ge=0, le=10_000, description="delay of the mock provider per streamed token in ms (tests), e.g. 5"
    )
    gemini_api_key: SecretStr | None = Field(None, description="Gemini Developer API key (omit with GEMINI_VERTEX)")
    gemini_vertex: bool = Field(False, description="true to call Gemini through Vertex AI with the service account")
    gemini_location: str = Field("us-central1", description="Vertex AI region for Gemini, e.g. us-central1")
    gemini_base_url: str | None = Field(None, description="override of the Gemini API base URL (proxies, tests)")
    openai_base_url: str = Field(
        "https://api.openai.com/v1",
        description="base URL of an OpenAI-compatible API, e.g. http://localhost:11434/v1 for Ollama",
    )
    openai_api_key: SecretStr | None = Field(None, description="API key of the OpenAI-compatible endpoint")

    @field_validator("llm_models")
    @classmethod
    def _models(cls, value: str) -> str:
        parse_model_chain(value)
        return value

    @field_validator("gemini_base_url", "openai_base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL, e.g. https://api.openai.com/v1")
        return value or None

    @property
    def model_chain(self) -> list[tuple[str, str]]:
        return parse_model_chain(self.llm_models)

    def cross_checks(self, env: Mapping[str, str]) -> list[str]:
        problems = []
        providers = {p for p, _ in parse_model_chain(self.llm_models)}
        if "gemini" in providers and not self.gemini_vertex and self.gemini_api_key is None:
            problems.append(
                "GEMINI_API_KEY: required when LLM_MODELS names gemini and GEMINI_VERTEX is false "
                "(a Gemini Developer API key)"
            )
        return problems


class IngestSection(BaseSettings):
    """Continuous usage ingestion (POST /v1/traces, POST /v1/litellm): write concurrency and back-pressure."""

    ingest_max_concurrent_writes: int = Field(
        4,
        ge=1,
        le=64,
        description="ingest batches one API instance writes at once; more wait INGEST_QUEUE_WAIT_S, then get 429",
    )
    ingest_queue_wait_s: float = Field(
        2.0, ge=0, le=30, description="seconds an ingest request waits for a write slot before 429, e.g. 2"
    )
    ingest_statement_timeout_ms: int = Field(
        5000,
        ge=100,
        le=60_000,
        description="statement and lock timeout of an ingest write in ms; a slower database answers 429, e.g. 5000",
    )
    usage_delete_statement_timeout_ms: int = Field(
        120_000,
        ge=1000,
        le=900_000,
        description="statement timeout of DELETE /api/usage in ms (half a million records: ~25 s), e.g. 120000",
    )
    ingest_retry_after_s: int = Field(
        5, ge=1, le=300, description="Retry-After of a 429 from the ingest routes in seconds, e.g. 5"
    )
    ingest_max_decompressed_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        description="largest gzip-decompressed ingest body in bytes (413 above), e.g. 16777216",
    )
    ingest_rollup_refresh_s: int = Field(
        20,
        ge=1,
        le=3600,
        description="seconds between two rollup refreshes of one user while records stream in, e.g. 20",
    )


class AgentSettings(
    CommonSection, DatabaseSection, TokenVerifySection, AgentSection, LLMSection, IngestSection, PlansSection
):
    """Everything the agent API and the agent worker read from the environment."""
