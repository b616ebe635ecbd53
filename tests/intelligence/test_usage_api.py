"""The usage routes over real HTTP (a werkzeug server on 127.0.0.1 serving shared.http.Router) and a real
PostgreSQL; the bearer token is the user id (a stand-in for the agent API's token check)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask, request
from werkzeug.serving import make_server

from functions.agent.usage import routes
from functions.agent.usage.generate import generate, write
from functions.agent.usage.upload import upload
from shared.errors import unauthorized
from shared.http import Ctx, Router
from tests.intelligence.conftest import make_user

MAX_BODY = 64_000


class StubDeps:
    def __init__(self, db: Any) -> None:
        self.db = db
        self.settings = None

    def current_user(self, ctx: Ctx) -> dict[str, Any]:
        if not ctx.bearer:
            raise unauthorized()
        return {"id": ctx.bearer, "email": None}


@pytest.fixture(scope="module")
def api(intel_db: Any) -> Iterator[str]:
    router = Router("usage-test", [], max_body_bytes=MAX_BODY)
    routes.register(router, StubDeps(intel_db))
    app = Flask("usage-test")
    app.add_url_rule("/<path:path>", "all", lambda path: router(request), methods=["GET", "POST", "DELETE"])
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def client(api: str, intel_db: Any) -> Iterator[httpx.Client]:
    user = make_user(intel_db)
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {user}"}, trust_env=False, timeout=30) as c:
        c.user_id = user  # type: ignore[attr-defined]
        yield c


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def base_row(request_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "timestamp": "2025-06-01T10:00:00Z",
        "model": "gpt-4o-mini",
        "input_tokens": 1000,
        "output_tokens": 50,
        **extra,
    }


def stored(db: Any, user: str) -> list[dict[str, Any]]:
    return db.all("SELECT * FROM usage_records WHERE user_id = %s ORDER BY request_id", [user])


def test_jsonl_upload_is_idempotent_by_request_id(client: httpx.Client, intel_db: Any) -> None:
    body = jsonl(
        [
            base_row("a", feature="chat", interactive=True, prefix_hash="p", prefix_tokens=800),
            base_row("b", model="claude-sonnet-4-5-20250929", cached_input_tokens=500, status="failure"),
        ]
    )
    first = client.post("/api/usage", content=body, headers={"Content-Type": "application/x-ndjson"})
    assert first.status_code == 201, first.text
    assert first.json() | {"upload_id": None} == {
        "upload_id": None,
        "format": "netra",
        "part": None,
        "rows_received": 2,
        "rows_inserted": 2,
        "rows_duplicate": 0,
        "data_version": 1,
    }
    again = client.post("/api/usage", content=body + jsonl([base_row("c")]))
    assert again.status_code == 201 and (again.json()["rows_inserted"], again.json()["rows_duplicate"]) == (1, 2)
    rows = stored(intel_db, client.user_id)
    assert [(r["request_id"], r["provider"], r["model"], r["status"]) for r in rows] == [
        ("a", "openai", "gpt-4o-mini", "ok"),
        ("b", "anthropic", "claude-sonnet-4-5", "error"),
        ("c", "openai", "gpt-4o-mini", "ok"),
    ]
    assert (rows[0]["feature"], rows[0]["interactive"], rows[0]["prefix_tokens"], rows[1]["cached_input_tokens"]) == (
        "chat",
        True,
        800,
        500,
    )
    replay = client.post("/api/usage", content=body)
    assert replay.status_code == 200 and replay.json()["rows_inserted"] == 0 and replay.json()["data_version"] is None


def test_csv_upload_and_summary(client: httpx.Client) -> None:
    body = (
        "request_id,timestamp,provider,model,input_tokens,output_tokens,interactive,latency_ms,feature\n"
        "r1,2025-06-01T10:00:00Z,openai,gpt-4o,100,10,true,250,chat\n"
        "r2,1748773200,google,gemini-2.5-flash,200,20,no,,search\n"
    )
    response = client.post("/api/usage?format=netra", content=body, headers={"Content-Type": "text/csv"})
    assert response.status_code == 201, response.text
    summary = client.get("/api/usage/summary").json()
    assert summary["records"] == 2 and summary["uploads"] == 1
    assert summary["first_ts"] == "2025-06-01T10:00:00+00:00" and summary["last_ts"] == "2025-06-01T10:20:00+00:00"
    assert summary["tokens"]["input_tokens"] == 300 and summary["field_coverage"]["latency_ms"] == 1
    assert {m["model"] for m in summary["models"]} == {"gpt-4o", "gemini-2.5-flash"}


def test_invalid_rows_are_reported_and_nothing_is_stored(client: httpx.Client, intel_db: Any) -> None:
    body = jsonl(
        [
            base_row("ok-1"),
            {"request_id": "bad-2", "timestamp": "2025-06-01T10:00:00Z", "input_tokens": "many", "output_tokens": 5},
            base_row("bad-3", timestamp="yesterday", interactive="maybe"),
        ]
    )
    body += b"{not json\n"
    response = client.post("/api/usage?first_row=101", content=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_rows" and "nothing was stored" in error["message"]
    problems = [(e["row"], e["field"]) for e in error["details"]["errors"]]
    assert problems == [
        (102, "model"),
        (102, "input_tokens"),
        (103, "timestamp"),
        (103, "interactive"),
        (104, "(line)"),
    ]
    assert all(e["reason"] for e in error["details"]["errors"])
    assert error["details"]["rows_received"] == 4
    assert stored(intel_db, client.user_id) == []


def test_unknown_model_needs_a_provider(client: httpx.Client) -> None:
    response = client.post("/api/usage", content=jsonl([base_row("x", model="in-house-7b")]))
    assert response.status_code == 422
    assert response.json()["error"]["details"]["errors"][0]["field"] == "provider"
    accepted = client.post("/api/usage", content=jsonl([base_row("x", model="in-house-7b", provider="vllm")]))
    assert accepted.status_code == 201


def test_litellm_spend_logs(client: httpx.Client, intel_db: Any) -> None:
    logs = [
        {
            "request_id": "chatcmpl-1",
            "call_type": "acompletion",
            "spend": 0.0012,
            "total_tokens": 1650,
            "prompt_tokens": 1500,
            "completion_tokens": 150,
            "startTime": "2025-06-02T09:00:00.000Z",
            "endTime": "2025-06-02T09:00:01.250Z",
            "model": "gpt-4o-2024-08-06",
            "custom_llm_provider": "openai",
            "user": "",
            "end_user": "cust-9",
            "request_tags": ["support"],
            "cache_key": "",
            "metadata": {
                "usage_object": {
                    "prompt_tokens_details": {"cached_tokens": 1024},
                    "completion_tokens_details": {"reasoning_tokens": 30},
                }
            },
            "status": "success",
        },
        {
            "request_id": "msg-2",
            "call_type": "acompletion",
            "spend": 0.01,
            "total_tokens": 3100,
            "prompt_tokens": 3000,
            "completion_tokens": 100,
            "startTime": "2025-06-02T09:05:00",
            "endTime": "2025-06-02T09:05:02",
            "model": "claude-sonnet-4-5",
            "custom_llm_provider": "anthropic",
            "metadata": json.dumps(
                {"usage_object": {"cache_read_input_tokens": 2000, "cache_creation_input_tokens": 500}}
            ),
            "request_tags": "[]",
            "status": "failure",
        },
    ]
    response = client.post("/api/usage", content=json.dumps(logs), headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    assert response.json()["format"] == "litellm"
    first, second = stored(intel_db, client.user_id)
    assert (
        first["model"],
        first["input_tokens"],
        first["cached_input_tokens"],
        first["output_tokens"],
        first["reasoning_tokens"],
        first["latency_ms"],
        first["feature"],
        first["end_user"],
    ) == ("gpt-4o", 476, 1024, 120, 30, 1250, "support", "cust-9")
    assert (
        second["input_tokens"],
        second["cached_input_tokens"],
        second["cache_write_tokens"],
        second["status"],
        second["latency_ms"],
    ) == (500, 2000, 500, "error", 2000)


def test_provider_request_logs(client: httpx.Client, intel_db: Any) -> None:
    messages = [{"role": "system", "content": "You are a support bot. " * 50}, {"role": "user", "content": "hi"}]
    lines = [
        # OpenAI chat completion with a request: hashes, max_tokens, end user, feature from metadata
        {
            "request": {
                "model": "gpt-4o-mini",
                "messages": messages,
                "max_tokens": 300,
                "user": "u-1",
                "metadata": {"feature": "support"},
            },
            "response": {
                "id": "chatcmpl-A",
                "object": "chat.completion",
                "created": 1748854800,
                "model": "gpt-4o-mini-2024-07-18",
                "usage": {
                    "prompt_tokens": 2000,
                    "completion_tokens": 300,
                    "prompt_tokens_details": {"cached_tokens": 1536},
                    "completion_tokens_details": {"reasoning_tokens": 0},
                },
            },
            "latency_ms": 900,
        },
        # the same request again: same request_hash and prefix_hash
        {
            "request": {"model": "gpt-4o-mini", "messages": messages, "max_tokens": 300, "user": "u-2"},
            "response": {
                "id": "chatcmpl-B",
                "object": "chat.completion",
                "created": 1748854860,
                "model": "gpt-4o-mini",
                "usage": {"prompt_tokens": 2000, "completion_tokens": 280},
            },
        },
        # OpenAI Batch API output line: background work
        {
            "id": "batch_req_1",
            "custom_id": "job-7",
            "response": {
                "status_code": 200,
                "request_id": "req-batch-7",
                "body": {
                    "id": "chatcmpl-C",
                    "object": "chat.completion",
                    "created": 1748854900,
                    "model": "gpt-4.1",
                    "usage": {"prompt_tokens": 100, "completion_tokens": 20},
                },
            },
        },
        # OpenAI Responses API object
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 1748854950,
            "model": "o4-mini",
            "usage": {
                "input_tokens": 500,
                "input_tokens_details": {"cached_tokens": 100},
                "output_tokens": 400,
                "output_tokens_details": {"reasoning_tokens": 350},
            },
        },
        # Anthropic message
        {
            "id": "msg_1",
            "type": "message",
            "model": "claude-haiku-4-5-20251001",
            "timestamp": "2025-06-02T09:10:00Z",
            "usage": {
                "input_tokens": 50,
                "cache_read_input_tokens": 5000,
                "cache_creation_input_tokens": 0,
                "output_tokens": 60,
            },
        },
        # Gemini generateContent response
        {
            "responseId": "gem-1",
            "modelVersion": "gemini-2.5-flash",
            "timestamp": "2025-06-02T09:11:00Z",
            "usageMetadata": {
                "promptTokenCount": 1200,
                "cachedContentTokenCount": 1000,
                "candidatesTokenCount": 80,
                "thoughtsTokenCount": 40,
            },
        },
    ]
    response = client.post("/api/usage?format=openai", content=jsonl(lines))
    assert response.status_code == 201, response.text
    rows = {r["request_id"]: r for r in stored(intel_db, client.user_id)}
    a, b = rows["chatcmpl-A"], rows["chatcmpl-B"]
    assert (
        a["model"],
        a["input_tokens"],
        a["cached_input_tokens"],
        a["output_tokens"],
        a["max_tokens"],
        a["end_user"],
        a["feature"],
        a["latency_ms"],
        a["interactive"],
    ) == ("gpt-4o-mini", 464, 1536, 300, 300, "u-1", "support", 900, None)
    # 1,150 characters of system prompt: estimated at 4 characters per token
    assert a["prefix_hash"] == b["prefix_hash"] and a["prefix_tokens"] == b["prefix_tokens"] == 288
    assert a["request_hash"] == b["request_hash"]  # the same request from another end user is a repeat
    batch = rows["req-batch-7"]
    assert (batch["model"], batch["interactive"], batch["provider"]) == ("gpt-4.1", False, "openai")
    responses = rows["resp_1"]
    assert (
        responses["input_tokens"],
        responses["cached_input_tokens"],
        responses["output_tokens"],
        responses["reasoning_tokens"],
    ) == (400, 100, 50, 350)
    anthropic = rows["msg_1"]
    assert (anthropic["provider"], anthropic["model"], anthropic["input_tokens"], anthropic["cached_input_tokens"]) == (
        "anthropic",
        "claude-haiku-4-5",
        50,
        5000,
    )
    gemini = rows["gem-1"]
    assert (
        gemini["provider"],
        gemini["input_tokens"],
        gemini["cached_input_tokens"],
        gemini["output_tokens"],
        gemini["reasoning_tokens"],
    ) == ("google", 200, 1000, 80, 40)


def test_unreadable_bodies(client: httpx.Client) -> None:
    assert client.post("/api/usage", content=b"").json()["error"]["code"] == "empty_body"
    assert client.post("/api/usage", content=b"[{oops").json()["error"]["code"] == "invalid_json"
    assert client.post("/api/usage", content=b"\xff\xfe\x00").json()["error"]["code"] == "invalid_encoding"
    bad_query = client.post("/api/usage?format=xml", content=jsonl([base_row("q")]))
    assert bad_query.status_code == 422 and bad_query.json()["error"]["code"] == "validation_error"
    assert httpx.post(str(client.base_url) + "/api/usage", content=b"{}").status_code == 401


def test_body_and_row_limits(client: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenario 29: an upload larger than the body limit is refused before it is read, with how to send parts;
    a part with too many rows is refused too."""
    big = jsonl([base_row(f"r{i}") for i in range(MAX_BODY // 100)])
    assert len(big) > MAX_BODY
    response = client.post("/api/usage", content=big)
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    monkeypatch.setattr(routes, "MAX_ROWS_PER_PART", 3)
    response = client.post("/api/usage", content=jsonl([base_row(f"r{i}") for i in range(4)]))
    assert response.status_code == 413 and response.json()["error"]["details"] == {"rows": 4, "limit_rows": 3}
    schema = client.get("/api/usage/schema").json()
    assert schema["limits"] == {"max_body_bytes": MAX_BODY, "max_rows_per_part": 3}
    assert set(schema["formats"]) == {"netra", "litellm", "openai"} and "request_id" in schema["required"]


def test_large_file_in_parts_with_the_upload_command(client: httpx.Client, intel_db: Any, tmp_path: Path) -> None:
    """A generated file bigger than one request goes up in parts; running the command again stores nothing new."""
    path = tmp_path / "usage.csv"
    with path.open("w") as out:
        count = write(
            generate(
                "coding_assistant", days=1, requests_per_day=600, seed=3, start=__import__("datetime").date(2025, 6, 1)
            ),
            out,
            "csv",
        )
    assert path.stat().st_size > MAX_BODY
    token = client.headers["Authorization"].split()[1]
    totals = upload(path, str(client.base_url), token, part_bytes=MAX_BODY - 1000)
    assert totals["parts"] >= 2 and totals["rows_inserted"] == count and totals["rows_duplicate"] == 0
    again = upload(path, str(client.base_url), token, part_bytes=MAX_BODY - 1000)
    assert again["rows_inserted"] == 0 and again["rows_duplicate"] == count
    assert len(stored(intel_db, client.user_id)) == count


def test_delete_all_or_one_upload(client: httpx.Client) -> None:
    first = client.post("/api/usage", content=jsonl([base_row("d1"), base_row("d2")])).json()
    client.post("/api/usage", content=jsonl([base_row("d3")]))
    one = client.delete(f"/api/usage?upload_id={first['upload_id']}")
    assert one.status_code == 200 and one.json()["deleted"] == 2
    assert client.get("/api/usage/summary").json()["records"] == 1
    everything = client.delete("/api/usage").json()
    assert everything["deleted"] == 1 and everything["data_version"] == 4
    summary = client.get("/api/usage/summary").json()
    assert summary["records"] == 0 and summary["uploads"] == 0
    assert client.delete("/api/usage?upload_id=nope").status_code == 422


def test_a_failure_mid_upload_stores_nothing(intel_db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Atomic: the database fails after the first of several insert chunks -> no row, no upload record and no new
    data version remain; the same body sent again is stored whole."""
    from functions.agent.usage import store
    from functions.agent.usage.schema import build_row

    user = make_user(intel_db)
    rows = [build_row(base_row(f"m{i}")) for i in range(5)]
    monkeypatch.setattr(store, "INSERT_CHUNK", 2)
    real_arrays, calls = store._arrays, {"n": 0}

    def failing_arrays(chunk: list[Any]) -> list[list[Any]]:
        calls["n"] += 1
        columns = real_arrays(chunk)
        if calls["n"] == 2:  # the first chunk is already inserted in the transaction: PostgreSQL rejects this one
            columns[1] = ["not-a-timestamp"] * len(chunk)
        return columns

    monkeypatch.setattr(store, "_arrays", failing_arrays)
    with pytest.raises(Exception, match="timestamp"):
        store.insert_rows(intel_db, user, rows, "netra")
    assert calls["n"] == 2
    assert stored(intel_db, user) == []
    assert intel_db.scalar("SELECT count(*) FROM usage_uploads WHERE user_id = %s", [user]) == 0
    assert store.data_version(intel_db, user) == 0
    monkeypatch.setattr(store, "_arrays", real_arrays)
    assert store.insert_rows(intel_db, user, rows, "netra")["rows_inserted"] == 5
    assert len(stored(intel_db, user)) == 5


# -- docs/api/usage.openapi.yaml against the routes and their real answers ---------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs/api/usage.openapi.yaml"
AGENT_DOC = DOC.with_name("agent.openapi.yaml")
METHODS = {"get", "post", "put", "patch", "delete"}
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
    "object": (dict,),
    "array": (list,),
}


def _load(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text())


def _operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m.upper(), p): op for p, item in doc["paths"].items() for m, op in item.items() if m in METHODS}


def violations(value: Any, schema: dict[str, Any], doc: dict[str, Any], at: str = "$") -> list[str]:
    """Where a JSON value disagrees with an OpenAPI 3.1 schema: type, enum, required keys, and (stricter than
    JSON Schema, so that the document cannot silently fall behind) keys an object schema does not list."""
    if "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        return violations(value, node, doc, at)
    found = []
    types = schema.get("type")
    if types is not None:
        allowed = [types] if isinstance(types, str) else types
        if not any(
            isinstance(value, JSON_TYPES[t]) and not (t in ("integer", "number") and isinstance(value, bool))
            for t in allowed
        ):
            return [f"{at}: {value!r} is not {types}"]
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{at}: {value!r} not in {schema['enum']}")
    if isinstance(value, dict):
        props = schema.get("properties")
        found += [f"{at}: missing {k}" for k in schema.get("required", []) if k not in value]
        for key, item in value.items():
            if props is not None and key in props:
                found += violations(item, props[key], doc, f"{at}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                found += violations(item, schema["additionalProperties"], doc, f"{at}.{key}")
            elif props is not None:
                found.append(f"{at}: {key} is not documented")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += violations(item, schema["items"], doc, f"{at}[{i}]")
    return found


def response_schema(doc: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    response = _operations(doc)[(method, path)]["responses"][str(status)]
    if "$ref" in response:
        response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response["content"]["application/json"]["schema"]


def test_the_usage_document_lists_exactly_the_served_routes() -> None:
    router = Router("doc-test", [], max_body_bytes=MAX_BODY)
    routes.register(router, StubDeps(None))
    served = set(router.routes())
    doc = _load(DOC)
    assert set(_operations(doc)) == served
    # The agent API's own document carries the same operations under the same ids.
    agent = _operations(_load(AGENT_DOC))
    for key, op in _operations(doc).items():
        assert agent[key]["operationId"] == op["operationId"], key


def test_the_usage_document_names_the_real_query_parameters_and_limits() -> None:
    from typing import get_args

    ops = _operations(_load(DOC))
    for (method, path), model in (
        (("POST", "/api/usage"), routes.UploadQuery),
        (("DELETE", "/api/usage"), routes.DeleteQuery),
    ):
        params = {p["name"]: p for p in ops[(method, path)].get("parameters", [])}
        assert set(params) == set(model.model_fields), (method, path)
    upload = {p["name"]: p for p in ops[("POST", "/api/usage")]["parameters"]}
    assert upload["format"]["schema"]["enum"] == list(get_args(routes.UploadQuery.model_fields["format"].annotation))
    assert f"{routes.MAX_ROWS_PER_PART:,} rows" in ops[("POST", "/api/usage")]["description"]
    assert f"{routes.MAX_ROWS_PER_PART:,}" in ops[("POST", "/api/usage")]["responses"]["413"]["description"]


def test_real_answers_match_the_usage_document(client: httpx.Client) -> None:
    doc = _load(DOC)
    answers = [
        ("POST", "/api/usage", client.post("/api/usage", content=jsonl([base_row("doc-1")]))),
        ("POST", "/api/usage", client.post("/api/usage?part=2&first_row=7", content=jsonl([base_row("doc-1")]))),
        ("POST", "/api/usage", client.post("/api/usage", content=jsonl([base_row("doc-2", timestamp="never")]))),
        ("POST", "/api/usage", client.post("/api/usage", content=b"")),
        ("GET", "/api/usage/summary", client.get("/api/usage/summary")),
        ("GET", "/api/usage/schema", client.get("/api/usage/schema")),
        ("DELETE", "/api/usage", client.delete("/api/usage")),
        ("GET", "/api/usage/summary", httpx.get(str(client.base_url) + "/api/usage/summary")),
    ]
    assert [a[2].status_code for a in answers] == [201, 200, 422, 400, 200, 200, 200, 401]
    for method, path, answer in answers:
        schema = response_schema(doc, method, path, answer.status_code)
        assert violations(answer.json(), schema, doc) == [], (method, path, answer.status_code, answer.text)


def test_the_document_checker_catches_drift() -> None:
    doc = _load(DOC)
    summary = {"$ref": "#/components/schemas/UsageSummary"}
    assert violations({"records": "3", "surprise": 1}, summary, doc) == [
        "$: missing tokens",
        "$: missing models",
        "$: missing field_coverage",
        "$: missing uploads",
        "$: missing data_version",
        "$.records: '3' is not integer",
        "$: surprise is not documented",
    ]


def test_each_user_sees_and_deletes_only_their_own_records(api: str, intel_db: Any) -> None:
    """Summary and delete act on the caller's records only, even given another user's upload id; the same
    request_id under two users is two records (idempotency is per user)."""
    alice, bob = make_user(intel_db), make_user(intel_db)
    with (
        httpx.Client(base_url=api, headers={"Authorization": f"Bearer {alice}"}, trust_env=False) as a,
        httpx.Client(base_url=api, headers={"Authorization": f"Bearer {bob}"}, trust_env=False) as b,
    ):
        upload_a = a.post("/api/usage", content=jsonl([base_row("same-id"), base_row("a-only")])).json()
        assert b.post("/api/usage", content=jsonl([base_row("same-id")])).json()["rows_inserted"] == 1
        assert b.get("/api/usage/summary").json()["records"] == 1
        assert b.delete(f"/api/usage?upload_id={upload_a['upload_id']}").json()["deleted"] == 0
        assert b.delete("/api/usage").json()["deleted"] == 1
        assert a.get("/api/usage/summary").json()["records"] == 2
    assert [r["request_id"] for r in stored(intel_db, alice)] == ["a-only", "same-id"]
