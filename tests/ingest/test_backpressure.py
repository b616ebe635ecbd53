"""Back-pressure instead of loss: when the database is slow (here: the user's data-version row held locked by
another transaction) or the instance's write slots are taken, an ingest request is rolled back and answered 429
with Retry-After; the official OTLP exporter waits that long, sends the same batch again, and every span arrives
exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.ingest.conftest import IngestServer, serve
from tests.ingest.otlp_payloads import chat_attrs, request, span


@pytest.fixture(scope="module")
def slow_db_server(ingest_db: Any) -> Iterator[IngestServer]:
    info, server = serve(ingest_db, ingest_statement_timeout_ms=300, ingest_retry_after_s=1)
    yield info
    server.shutdown()


def hold_user_row(db: Any, user_id: str, release: threading.Event, held: threading.Event) -> threading.Thread:
    def run() -> None:
        with db.transaction() as tx:
            tx.execute("SELECT 1 FROM usage_state WHERE user_id = %s FOR UPDATE", [user_id])
            held.set()
            release.wait(30)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert held.wait(10)
    return thread


def post(server: IngestServer, key: str, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/traces",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/x-protobuf"},
        trust_env=False,
        timeout=30,
    )


def test_scenario_8_slow_database_gets_429_and_the_exporter_retry_stores_all(slow_db_server: IngestServer) -> None:
    """Scenario 8 for ingestion: the statement and lock timeouts end a stalled write cleanly (rolled back, 429),
    and the exporter's retry stores the batch once the database answers again."""
    server = slow_db_server
    user = server.user()
    key = server.new_key(user)
    assert post(server, key, request([span(chat_attrs())]).SerializeToString()).status_code == 200

    release, held = threading.Event(), threading.Event()
    holder = hold_user_row(server.db, user, release, held)
    provider = TracerProvider(resource=Resource.create({"service.name": "bp"}))
    provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", headers={"Authorization": f"Bearer {key}"})
        )
    )
    tracer = provider.get_tracer("test")
    # release the row once the first attempt has been refused
    threading.Timer(0.8, release.set).start()
    started = time.monotonic()
    with tracer.start_as_current_span("chat gpt-4o-mini", attributes=chat_attrs()):
        pass
    provider.shutdown()
    holder.join(10)

    traces = [status for path, status in server.statuses if path == "/v1/traces"]
    assert 429 in traces and traces[-1] == 200, traces
    assert time.monotonic() - started >= 0.9  # the exporter honoured Retry-After: 1
    assert len(server.records(user)) == 2  # nothing lost, nothing twice


def test_429_has_retry_after_and_stores_nothing(slow_db_server: IngestServer) -> None:
    server = slow_db_server
    user = server.user()
    key = server.new_key(user)
    assert post(server, key, request([span(chat_attrs())]).SerializeToString()).status_code == 200
    release, held = threading.Event(), threading.Event()
    holder = hold_user_row(server.db, user, release, held)
    try:
        refused = post(server, key, request([span(chat_attrs()) for _ in range(3)]).SerializeToString())
    finally:
        release.set()
        holder.join(10)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert len(server.records(user)) == 1  # the refused batch left no row behind


def test_busy_write_slots_answer_429_at_once(ingest_db: Any) -> None:
    server, http = serve(ingest_db, ingest_max_concurrent_writes=1, ingest_queue_wait_s=0, ingest_retry_after_s=3)
    try:
        user = server.user()
        key = server.new_key(user)
        assert post(server, key, request([span(chat_attrs())]).SerializeToString()).status_code == 200
        release, held = threading.Event(), threading.Event()
        holder = hold_user_row(server.db, user, release, held)
        first: list[httpx.Response] = []
        waiting = threading.Thread(
            target=lambda: first.append(post(server, key, request([span(chat_attrs())]).SerializeToString()))
        )
        waiting.start()
        time.sleep(0.5)  # the first request holds the only write slot, blocked on the row lock
        second = post(server, key, request([span(chat_attrs())]).SerializeToString())
        release.set()
        waiting.join(10)
        holder.join(10)
    finally:
        http.shutdown()
    assert second.status_code == 429 and second.headers["Retry-After"] == "3"
    assert "writing as many batches" in status_pb2.Status.FromString(second.content).message
    assert first[0].status_code == 200
    assert len(server.records(user)) == 2


def test_litellm_gets_a_503_its_logger_retries(slow_db_server: IngestServer) -> None:
    """LiteLLM's GenericAPILogger retries 5xx answers but drops a batch answered 429, so its route answers
    back-pressure with 503 + Retry-After; LiteLLM's own retry decision accepts it."""
    server = slow_db_server
    user = server.user()
    key = server.new_key(user)
    payload = {
        "id": "bp-litellm-1",
        "model": "gpt-4o-mini",
        "custom_llm_provider": "openai",
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "startTime": 1764000000.0,
        "endTime": 1764000000.5,
        "status": "success",
    }
    url = f"{server.url}/v1/litellm"
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.post(url, json=[payload], headers=headers, trust_env=False).status_code == 200
    release, held = threading.Event(), threading.Event()
    holder = hold_user_row(server.db, user, release, held)
    try:
        refused = httpx.post(url, json=[{**payload, "id": "bp-litellm-2"}], headers=headers, trust_env=False)
    finally:
        release.set()
        holder.join(10)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["code"] == "ingest_busy"

    from litellm.integrations.generic_api.generic_api_callback import GenericAPILogger

    error = httpx.HTTPStatusError("busy", request=refused.request, response=refused)
    assert GenericAPILogger._should_retry_exception(object.__new__(GenericAPILogger), error)
    assert len(server.records(user)) == 1
