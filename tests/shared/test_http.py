"""The shared HTTP toolkit, driven through Flask's real request objects."""

from __future__ import annotations

import json

from flask import Flask
from pydantic import BaseModel, Field

from shared.errors import ApiError, ServiceUnavailable
from shared.http import Router, origin_allowed
from shared.startup import StartupManager

app = Flask(__name__)


class Body(BaseModel):
    title: str = Field(min_length=1, max_length=20)
    count: int = 1


def make_router() -> Router:
    manager = StartupManager("t")
    manager.add("database", lambda: "db")
    router = Router("t", ["https://app.example.com", "http://localhost:*"], max_body_bytes=200, health=manager.health)

    @router.route("POST", "/things/{thing_id}")
    def create(ctx):  # noqa: ANN001, ANN202
        body = ctx.json(Body)
        return {"id": ctx.params["thing_id"], "title": body.title, "bearer": ctx.bearer is not None}, 201

    @router.route("GET", "/boom")
    def boom(ctx):  # noqa: ANN001, ANN202
        raise RuntimeError("password=hunter2 leaked in an exception")

    @router.route("GET", "/busy")
    def busy(ctx):  # noqa: ANN001, ANN202
        raise ServiceUnavailable("database is starting", retry_after=3, code="database_unavailable")

    @router.route("GET", "/firestore-timeout")
    def firestore_timeout(ctx):  # noqa: ANN001, ANN202
        from google.api_core.exceptions import DeadlineExceeded

        raise DeadlineExceeded("Deadline of 5.0s exceeded")

    @router.route("GET", "/firestore-bad-request")
    def firestore_bad_request(ctx):  # noqa: ANN001, ANN202
        from google.api_core.exceptions import InvalidArgument

        raise InvalidArgument("bad field")

    @router.route("GET", "/teapot")
    def teapot(ctx):  # noqa: ANN001, ANN202
        raise ApiError(418, "teapot", "short and stout", {"spout": True})

    return router


def call(router: Router, method: str, path: str, body: bytes | str | None = None, headers=None):  # noqa: ANN001, ANN201
    with app.test_request_context(path, method=method, data=body, headers=headers or {}):
        from flask import request

        response = router(request)
        payload = json.loads(response.get_data()) if response.get_data() else None
        return response.status_code, payload, response.headers


def test_routes_params_and_validation() -> None:
    router = make_router()
    status, body, headers = call(
        router,
        "POST",
        "/things/42",
        json.dumps({"title": "hi"}),
        {"Authorization": "Bearer abc.def", "Content-Type": "application/json"},
    )
    assert status == 201 and body == {"id": "42", "title": "hi", "bearer": True}
    assert headers["X-Request-Id"]

    status, body, _ = call(router, "POST", "/things/42", "{not json")
    assert status == 400 and body["error"]["code"] == "invalid_json"

    status, body, _ = call(router, "POST", "/things/42", json.dumps({"title": "", "count": "x"}))
    assert status == 422 and body["error"]["code"] == "validation_error"
    fields = {d["field"] for d in body["error"]["details"]}
    assert fields == {"title", "count"}


def test_errors_have_code_and_message_and_never_leak_internals() -> None:
    router = make_router()
    status, body, _ = call(router, "GET", "/boom")
    assert status == 500 and body["error"]["code"] == "internal"
    assert "hunter2" not in json.dumps(body)
    status, body, headers = call(router, "GET", "/busy")
    assert status == 503 and headers["Retry-After"] == "3" and body["error"]["code"] == "database_unavailable"
    status, body, headers = call(router, "GET", "/firestore-timeout")
    assert status == 503 and body["error"]["code"] == "dependency_unavailable" and int(headers["Retry-After"]) >= 1
    status, body, _ = call(router, "GET", "/firestore-bad-request")
    assert status == 500 and body["error"]["code"] == "internal", "only transient Google errors become 503"
    status, body, _ = call(router, "GET", "/teapot")
    assert status == 418 and body["error"]["details"] == {"spout": True}
    status, body, _ = call(router, "GET", "/nowhere")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body, headers = call(router, "GET", "/things/1")
    assert status == 405 and headers["Allow"] == "POST"


def test_scenario_29_request_body_is_bounded() -> None:
    """Scenario 29 (HTTP side): a request body over the limit is refused before it is read."""
    router = make_router()
    status, body, _ = call(router, "POST", "/things/1", json.dumps({"title": "x" * 500}))
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    assert body["error"]["details"]["limit_bytes"] == 200


def test_cors_allow_list() -> None:
    router = make_router()
    _, _, headers = call(router, "GET", "/teapot", headers={"Origin": "https://app.example.com"})
    assert headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    _, _, headers = call(router, "GET", "/teapot", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in headers
    status, _, _ = call(router, "OPTIONS", "/things/1", headers={"Origin": "https://evil.example.com"})
    assert status == 403
    status, _, headers = call(router, "OPTIONS", "/things/1", headers={"Origin": "http://localhost:5173"})
    assert status == 204 and "Authorization" in headers["Access-Control-Allow-Headers"]


def test_origin_patterns() -> None:
    allowed = ["https://app.example.com", "http://localhost:*"]
    assert origin_allowed("http://localhost:8080", allowed)
    assert origin_allowed("http://localhost", allowed)
    assert not origin_allowed("http://localhost.evil.com", allowed)
    assert not origin_allowed("http://localhost:8080.evil.com", allowed)
    assert not origin_allowed("https://app.example.com.evil.com", allowed)
    assert not origin_allowed(None, allowed)


def test_health_routes() -> None:
    router = make_router()
    status, body, _ = call(router, "GET", "/health/live")
    assert status == 200 and body["status"] == "alive"
    status, body, _ = call(router, "GET", "/health/startup")
    assert "components" in body and "database" in body["components"]
