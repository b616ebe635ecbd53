"""POST /v1/traces over real HTTP on a real PostgreSQL: OTLP protobuf and JSON (gzip too), GenAI spans to usage
records in the five token buckets, other spans ignored, partial success for refused spans, 400 for bodies that
cannot be read, idempotency by span id, one key per user."""

from __future__ import annotations

import gzip
import json
import os

import httpx
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tests.ingest.conftest import IngestServer
from tests.ingest.otlp_payloads import chat_attrs, request, span

PROTO = {"Content-Type": "application/x-protobuf"}


def post(server: IngestServer, key: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/traces",
        content=body,
        headers={"Authorization": f"Bearer {key}", **(headers or PROTO)},
        trust_env=False,
        timeout=30,
    )


def test_genai_spans_become_records_in_the_five_buckets(ingest: IngestServer) -> None:
    user = ingest.user()
    key = ingest.new_key(user)
    anthropic = span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "anthropic",  # the older attribute name
            "gen_ai.request.model": "claude-sonnet-4-5-20250929",
            "gen_ai.request.max_tokens": 1024,
            # input_tokens includes cache reads and writes (semantic conventions)
            "gen_ai.usage.input_tokens": 5000,
            "gen_ai.usage.cache_read.input_tokens": 3000,
            "gen_ai.usage.cache_creation.input_tokens": 1500,
            "gen_ai.usage.output_tokens": 700,
            "user.id": "customer-7",
        },
        span_id=bytes.fromhex("00000000000000a1"),
        duration_ms=2300,
    )
    openai = span(
        chat_attrs(**{"gen_ai.usage.reasoning.output_tokens": 100}), span_id=bytes.fromhex("00000000000000a2")
    )
    http_span = span({"http.request.method": "GET", "url.full": "https://example.com"})
    tool_span = span({"gen_ai.operation.name": "execute_tool", "gen_ai.request.model": "gpt-4o"})
    body = request([anthropic, openai, http_span, tool_span]).SerializeToString()

    response = post(ingest, key, body)

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/x-protobuf")
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert not answer.HasField("partial_success")
    rows = {r["request_id"]: r for r in ingest.records(user)}
    assert set(rows) == {"00000000000000a1", "00000000000000a2"}
    a = rows["00000000000000a1"]
    assert (a["provider"], a["model"]) == ("anthropic", "claude-sonnet-4-5")  # catalog id
    assert (a["input_tokens"], a["cached_input_tokens"], a["cache_write_tokens"]) == (500, 3000, 1500)
    assert (a["output_tokens"], a["reasoning_tokens"]) == (700, 0)
    assert (a["latency_ms"], a["max_tokens"], a["status"]) == (2300, 1024, "ok")
    assert (a["feature"], a["end_user"]) == ("support-bot", "customer-7")  # resource service.name, span user.id
    o = rows["00000000000000a2"]
    assert o["model"] == "gpt-4o-mini"  # the dated response model, resolved to the catalog's id
    assert (o["input_tokens"], o["output_tokens"], o["reasoning_tokens"]) == (1200, 200, 100)
    sources = ingest.db.one("SELECT * FROM usage_ingest_sources WHERE user_id = %s", [user])
    assert (sources["source"], sources["records"], sources["ignored"], sources["rejected"]) == ("otlp", 2, 2, 0)


def test_json_and_gzip_encodings(ingest: IngestServer) -> None:
    user = ingest.user()
    key = ingest.new_key(user)
    first = span(chat_attrs(), span_id=bytes.fromhex("0000000000000b01"))
    second = span(chat_attrs(), span_id=bytes.fromhex("0000000000000b02"))
    # OTLP/JSON: camelCase, ids as hex (protobuf's own JSON mapping would use base64).
    doc = json_format.MessageToDict(request([first]))
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                s["traceId"] = first.trace_id.hex()
                s["spanId"] = first.span_id.hex()
    as_json = post(ingest, key, json.dumps(doc).encode(), {"Content-Type": "application/json"})
    assert as_json.status_code == 200, as_json.text
    assert as_json.headers["Content-Type"].startswith("application/json")
    assert as_json.json() == {}
    zipped = post(
        ingest,
        key,
        gzip.compress(request([second]).SerializeToString()),
        {**PROTO, "Content-Encoding": "gzip"},
    )
    assert zipped.status_code == 200, zipped.text
    assert {r["request_id"] for r in ingest.records(user)} == {"0000000000000b01", "0000000000000b02"}


def test_a_retried_batch_adds_nothing(ingest: IngestServer) -> None:
    user = ingest.user()
    key = ingest.new_key(user)
    body = request([span(chat_attrs()) for _ in range(5)]).SerializeToString()
    for _ in range(3):
        assert post(ingest, key, body).status_code == 200
    assert len(ingest.records(user)) == 5
    sources = ingest.db.one("SELECT records, duplicates FROM usage_ingest_sources WHERE user_id = %s", [user])
    assert (sources["records"], sources["duplicates"]) == (5, 10)
    version = ingest.db.scalar("SELECT version FROM usage_state WHERE user_id = %s", [user])
    assert version == 1  # the retries changed nothing, so the rollups stay valid


def test_refused_spans_are_a_partial_success(ingest: IngestServer) -> None:
    user = ingest.user()
    key = ingest.new_key(user)
    good = span(chat_attrs())
    unknown_model = span(
        {"gen_ai.request.model": "house-model-v9", "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 2}
    )
    bad_count = span(chat_attrs(**{"gen_ai.usage.input_tokens": "lots"}))
    response = post(ingest, key, request([good, unknown_model, bad_count]).SerializeToString())
    assert response.status_code == 200
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 2
    assert "house-model-v9" in answer.partial_success.error_message
    assert "gen_ai.usage.input_tokens" in answer.partial_success.error_message
    assert [r["request_id"] for r in ingest.records(user)] == [good.span_id.hex()]


def test_unreadable_bodies_get_400_with_a_message(ingest: IngestServer) -> None:
    user = ingest.user()
    key = ingest.new_key(user)
    garbage = post(ingest, key, b"\xff\xff\xff\xff not protobuf")
    assert garbage.status_code == 400
    status = status_pb2.Status.FromString(garbage.content)
    assert "protobuf" in status.message
    bad_json = post(ingest, key, b"{not json", {"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["code"] == "invalid_payload"
    bad_ids = post(
        ingest,
        key,
        json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "zz"}]}]}]}).encode(),
        {"Content-Type": "application/json"},
    )
    assert bad_ids.status_code == 400 and "hex" in bad_ids.json()["message"]
    bad_gzip = post(ingest, key, b"not gzip", {**PROTO, "Content-Encoding": "gzip"})
    assert bad_gzip.status_code == 400
    wrong_type = post(ingest, key, b"a,b", {"Content-Type": "text/csv"})
    assert wrong_type.status_code == 415
    assert ingest.records(user) == []


def test_scenario_29_a_gzip_bomb_is_refused_without_being_inflated(ingest: IngestServer) -> None:
    """A small compressed body that inflates past INGEST_MAX_DECOMPRESSED_BYTES: 413, and at most that many bytes
    (plus one) are ever inflated (zlib's max_length), so the instance's memory stays bounded."""
    user = ingest.user()
    key = ingest.new_key(user)
    limit = ingest.settings.ingest_max_decompressed_bytes
    bomb = gzip.compress(b"\0" * (limit * 4))
    assert len(bomb) < 100_000  # well under the body limit: only the inflated size can refuse it
    too_big = post(ingest, key, bomb, {**PROTO, "Content-Encoding": "gzip"})
    assert too_big.status_code == 413
    assert "decompressed" in status_pb2.Status.FromString(too_big.content).message
    assert ingest.records(user) == []


def test_keys_authenticate_only_their_own_user(ingest: IngestServer) -> None:
    alice, bob = ingest.user(), ingest.user()
    alice_key = ingest.new_key(alice)
    shared_span = span(chat_attrs(), span_id=os.urandom(8))
    body = request([shared_span]).SerializeToString()
    assert post(ingest, alice_key, body).status_code == 200
    assert [r["request_id"] for r in ingest.records(alice)] == [shared_span.span_id.hex()]
    assert ingest.records(bob) == []
    # the same span id under bob's key is bob's record, and leaves alice's alone
    bob_key = ingest.new_key(bob)
    assert post(ingest, bob_key, body).status_code == 200
    assert len(ingest.records(alice)) == 1 and len(ingest.records(bob)) == 1


def test_missing_unknown_and_revoked_keys_are_refused(ingest: IngestServer) -> None:
    user = ingest.user()
    body = request([span(chat_attrs())]).SerializeToString()
    missing = httpx.post(f"{ingest.url}/v1/traces", content=body, headers=PROTO, trust_env=False)
    assert missing.status_code == 401
    assert post(ingest, "nik_" + "x" * 43, body).status_code == 401
    assert post(ingest, user, body).status_code == 401  # the user-id bearer of the key routes is not a key
    key = ingest.new_key(user)
    with ingest.client(user) as client:
        key_id = client.get("/api/ingest/keys").json()["keys"][0]["id"]
        assert client.delete(f"/api/ingest/keys/{key_id}").status_code == 200
    revoked = post(ingest, key, body)
    assert revoked.status_code == 401
    assert "revoked" in status_pb2.Status.FromString(revoked.content).message
    assert ingest.records(user) == []


def test_the_ingest_key_header_and_attribute_choices(ingest: IngestServer) -> None:
    user = ingest.user()
    key = ingest.new_key(user, feature_attribute="app.feature", end_user_attribute="enduser.id")
    s = span(chat_attrs(**{"app.feature": "summaries", "enduser.id": "u-9"}))
    response = httpx.post(
        f"{ingest.url}/v1/traces",
        content=request([s]).SerializeToString(),
        headers={**PROTO, "X-Ingest-Key": key},
        trust_env=False,
    )
    assert response.status_code == 200, response.content
    (row,) = ingest.records(user)
    assert (row["feature"], row["end_user"]) == ("summaries", "u-9")


def test_odd_values_are_refused_spans_not_errors(ingest: IngestServer) -> None:
    """Values a fuzzer or a broken exporter sends (NaN, infinity, a start time past year 9999, negative
    counts): the span is refused with a reason, the request is answered 200 with partial success."""
    user = ingest.user()
    key = ingest.new_key(user)
    nan = span(chat_attrs(**{"gen_ai.usage.input_tokens": float("nan")}))
    inf = span(chat_attrs(**{"gen_ai.usage.output_tokens": float("inf")}))
    negative = span(chat_attrs(**{"gen_ai.usage.cache_read.input_tokens": -5}))
    far = span(chat_attrs())
    far.start_time_unix_nano = 2**64 - 1
    far.end_time_unix_nano = 2**64 - 1
    response = post(ingest, key, request([nan, inf, negative, far]).SerializeToString())
    assert response.status_code == 200, response.content
    assert ExportTraceServiceResponse.FromString(response.content).partial_success.rejected_spans == 4
    assert ingest.records(user) == []
