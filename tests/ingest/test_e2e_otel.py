"""End to end with clients the project did not write: the official ``openai`` client, instrumented by the
official OpenTelemetry instrumentation (opentelemetry-instrumentation-openai-v2), calls a local
OpenAI-compatible stand-in; the OpenTelemetry SDK exports the spans with its OTLP/HTTP exporters (protobuf, and
JSON with opentelemetry-exporter-otlp-json-http) to POST /v1/traces; the usage records and their costs are the
ones the stand-in's usage implies."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from openai import OpenAI
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from shared.pricing import cost_usd
from tests.ingest.conftest import IngestServer
from tests.ingest.openai_standin import Standin, openai_standin


class Usage:
    def __init__(self, row: dict[str, Any]) -> None:
        for name in ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens"):
            setattr(self, name, int(row[name]))


@pytest.fixture(scope="module")
def standin() -> Iterator[Standin]:
    with openai_standin() as app:
        yield app


def exporter(kind: str, url: str, key: str) -> Any:
    headers = {"Authorization": f"Bearer {key}"}
    if kind == "protobuf":
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers=headers, compression=Compression.Gzip)
    from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter as JsonExporter

    return JsonExporter(endpoint=f"{url}/v1/traces", headers=headers)


@pytest.mark.parametrize("kind", ["protobuf", "json"])
def test_instrumented_openai_calls_arrive_as_priced_records(ingest: IngestServer, standin: Standin, kind: str) -> None:
    user = ingest.user()
    key = ingest.new_key(user)
    span_exporter = exporter(kind, ingest.url, key)
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout-assistant"}))
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    # This release of the instrumentation records prompt and completion tokens of a chat completion but not
    # their cached / reasoning parts (tests/ingest/test_otlp.py covers those attributes), so the stand-in
    # reports none: every token is priced as what the span says.
    standin.usage = {"prompt_tokens": 2400, "completion_tokens": 350, "total_tokens": 2750}
    try:
        client = OpenAI(base_url=standin.url, api_key="sk-test", max_retries=0)
        for _ in range(3):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], max_tokens=500
            )
        provider.force_flush()
    finally:
        instrumentor.uninstrument()
        provider.shutdown()

    rows = ingest.records(user)
    assert len(rows) == 3
    for row in rows:
        assert (row["provider"], row["model"], row["status"]) == ("openai", "gpt-4o-mini", "ok")
        assert row["feature"] == "checkout-assistant" and row["max_tokens"] == 500
        assert row["latency_ms"] is not None and row["latency_ms"] >= 0
        assert (row["input_tokens"], row["cached_input_tokens"], row["cache_write_tokens"]) == (2400, 0, 0)
        assert (row["output_tokens"], row["reasoning_tokens"]) == (350, 0)
        assert len(row["request_id"]) == 16  # the span id
    spent = sum((cost_usd("gpt-4o-mini", Usage(r)) for r in rows), Decimal(0))
    # gpt-4o-mini list prices (genai-prices, shared/pricing): 0.15 $/M input, 0.60 $/M output
    assert spent == 3 * (2400 * Decimal("0.15") + 350 * Decimal("0.60")) / Decimal(1_000_000)
