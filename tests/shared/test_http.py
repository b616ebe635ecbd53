"""The shared HTTP toolkit, driven through Flask's real request objects."""

from __future__ import annotations

import io
import json

import pytest
from flask import Flask
from pydantic import BaseModel, Field

from shared.errors import ApiError, ServiceUnavailable
from shared.http import MAX_JSON_DEPTH, Router, StrictBody, json_depth_exceeds, origin_allowed
from shared.startup import Component, StartupManager

app = Flask(__name__)


class Body(BaseModel):
    title: str = Field(min_length=1, max_length=20)
    count: int = 1


def make_router() -> Router:
    manager = StartupManager("t")
    manager.register(Component("database", lambda: "db"))
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


class Page(BaseModel):
    limit: int = Field(ge=1, le=50)


def make_shapes_router() -> Router:
    """Routes returning each shape a handler may return: a body, (body, status), (body, status, headers), a
    model, a ready-made Flask response; plus a query model and a 499 error."""
    from flask import Response

    router = Router("t", ["https://app.example.com"], max_body_bytes=200)

    @router.route("GET", "/plain")
    def plain(ctx):  # noqa: ANN001, ANN202
        return {"bearer": ctx.bearer}

    @router.route("POST", "/accepted")
    def accepted(ctx):  # noqa: ANN001, ANN202
        return {"queued": True}, 202, {"Location": "/jobs/7"}

    @router.route("GET", "/model")
    def model(ctx):  # noqa: ANN001, ANN202
        return ctx.query(Page)

    @router.route("GET", "/raw")
    def raw(ctx):  # noqa: ANN001, ANN202
        return Response("plain text", status=206, mimetype="text/plain")

    @router.route("GET", "/raw-created")
    def raw_created(ctx):  # noqa: ANN001, ANN202
        return Response("made", mimetype="text/plain"), 201

    @router.route("GET", "/closed")
    def closed(ctx):  # noqa: ANN001, ANN202
        raise ApiError(499, "client_closed", "the client went away")

    @router.route("POST", "/echo")
    def echo(ctx):  # noqa: ANN001, ANN202
        return {"size": len(ctx.request.get_data())}

    @router.route("GET", "/echo")
    def echo_get(ctx):  # noqa: ANN001, ANN202
        return {"method": "GET"}

    return router


def call_raw(router: Router, method: str, path: str, **kwargs):  # noqa: ANN003, ANN201
    with app.test_request_context(path, method=method, **kwargs):
        from flask import request

        return router(request)


def test_every_handler_return_shape_keeps_its_status_body_and_headers() -> None:
    router = make_shapes_router()
    origin = {"Origin": "https://app.example.com"}
    status, body, headers = call(router, "GET", "/plain", headers={"X-Request-Id": "req-1"})
    assert (status, body, headers["Content-Type"]) == (200, {"bearer": None}, "application/json")
    status, body, _ = call(router, "GET", "/plain", headers={"Authorization": "Bearer t0k"})
    assert (status, body) == (200, {"bearer": "t0k"})
    for other in ("Basic dXNlcjpwdw==", "Bearer ", "t0k"):  # another scheme, no token, no scheme: no bearer
        assert call(router, "GET", "/plain", headers={"Authorization": other})[1] == {"bearer": None}, other
    assert call(router, "GET", "/echo")[1] == {"method": "GET"}, "a second route for the same path is found"
    status, body, headers = call(router, "POST", "/accepted")
    assert (status, body, headers["Location"]) == (202, {"queued": True}, "/jobs/7")
    status, body, _ = call(router, "GET", "/model?limit=7")
    assert (status, body) == (200, {"limit": 7})
    response = call_raw(router, "GET", "/raw", headers={**origin, "X-Request-Id": "req-2"})
    assert (response.status_code, response.get_data()) == (206, b"plain text")
    assert response.headers["X-Request-Id"] == "req-2"
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert call_raw(router, "GET", "/raw-created").status_code == 201


def test_request_id_is_echoed_or_made() -> None:
    router = make_shapes_router()
    assert call(router, "GET", "/plain", headers={"X-Request-Id": "given-id"})[2]["X-Request-Id"] == "given-id"
    made = call(router, "GET", "/plain")[2]["X-Request-Id"]
    assert len(made) == 32 and int(made, 16) >= 0


def test_bad_query_parameters_are_a_422_naming_the_parameter() -> None:
    status, body, _ = call(make_shapes_router(), "GET", "/model?limit=500")
    assert status == 422 and body["error"]["code"] == "validation_error"
    assert body["error"]["message"] == "query parameters are invalid"
    assert [d["field"] for d in body["error"]["details"]] == ["limit"]


def test_only_server_errors_are_logged_as_failed_requests(caplog: pytest.LogCaptureFixture) -> None:
    router = make_router()
    with caplog.at_level("WARNING", logger="http"):
        call(router, "GET", "/boom")
        call(router, "GET", "/busy")
        call(make_shapes_router(), "GET", "/closed")
        call(router, "GET", "/teapot")
    failed = [r.status for r in caplog.records if r.getMessage() == "request failed"]
    assert failed == [500, 503], failed


def test_health_routes_answer_get_only_and_only_when_the_service_has_them() -> None:
    router = make_router()
    status, payload, headers = call(router, "POST", "/health/live")
    assert (status, payload["error"]["code"], headers["Allow"]) == (405, "method_not_allowed", "GET")
    assert call(make_shapes_router(), "GET", "/health/live")[0] == 404


def test_scenario_29_json_nesting_is_capped_before_parsing() -> None:
    """Scenario 29: a body nesting deeper than MAX_JSON_DEPTH is a 400 json_too_deep, counted on the text;
    brackets inside strings do not count; exactly the limit is parsed."""
    limit = MAX_JSON_DEPTH
    assert not json_depth_exceeds("[" * limit + "]" * limit)
    assert not json_depth_exceeds("[" * limit + "]" * limit + "[]"), "more brackets than the limit, depth = limit"
    assert json_depth_exceeds("[" * (limit + 1) + "]" * (limit + 1))
    assert not json_depth_exceeds('["' + "[" * 100 + '"]')
    assert not json_depth_exceeds("[]" * 100), "many siblings are not depth"
    assert json_depth_exceeds('{"a":' * (limit + 1) + "1" + "}" * (limit + 1))
    router = make_router()
    # The documented cap, as a number: 32 levels parse (then fail validation), 33 do not.
    status, body, _ = call(router, "POST", "/things/1", "[" * 32 + "]" * 32)
    assert status == 422, body
    status, body, _ = call(router, "POST", "/things/1", "[" * 33 + "]" * 33)
    assert status == 400 and body["error"]["code"] == "json_too_deep"
    # Only brackets count: other bytes (here 0xff, never in valid UTF-8) do not lower the depth.
    status, body, _ = call(router, "POST", "/things/1", b"\xff" * 40 + b"[" * 40 + b"]" * 40)
    assert status == 400 and body["error"]["code"] == "json_too_deep"


def test_scenario_29_chunked_body_over_the_limit_is_refused_not_truncated() -> None:
    """Scenario 29: a body without Content-Length (chunked) is read to at most the limit + 1 byte: exactly the
    limit is served whole, one byte more is a 413 (werkzeug would otherwise stop at the limit silently and hand
    the handler a truncated body). Without a limit given, the router's default is 1 MiB."""
    router = make_shapes_router()

    def chunked(size: int):  # noqa: ANN202
        return call_raw(
            router,
            "POST",
            "/echo",
            input_stream=io.BytesIO(b"x" * size),
            headers={"Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},  # what gunicorn sets for a chunked body
        )

    response = chunked(200)
    assert response.status_code == 200 and json.loads(response.get_data()) == {"size": 200}
    assert chunked(201).status_code == 413
    default = Router("t", [])
    default.route("POST", "/echo")(lambda ctx: {"size": len(ctx.request.get_data())})
    assert call(default, "POST", "/echo", b"x" * 1_048_576)[1] == {"size": 1_048_576}
    assert call(default, "POST", "/echo", b"x" * 1_048_577)[0] == 413


class CountingStream(io.BytesIO):
    """A request body that counts how much of it the server reads."""

    taken = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.taken += len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        data = super().readline(size)
        self.taken += len(data)
        return data


def test_scenario_29_a_huge_chunked_body_is_not_read_past_the_limit() -> None:
    """Scenario 29: of a 4 MiB chunked body sent to a 200-byte limit, the server reads a few bytes past the limit
    at most, not the whole body, before answering 413 (memory stays bounded whatever the client sends)."""
    stream = CountingStream(b"x" * (4 * 1_048_576))
    response = call_raw(
        make_shapes_router(),
        "POST",
        "/echo",
        input_stream=stream,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert stream.taken <= 65_536, f"read {stream.taken} bytes of the body for a 200-byte limit"


def test_unstorable_strings_are_a_422_naming_each_field() -> None:
    """A NUL (\\u0000) or an unpaired surrogate is valid JSON but storable nowhere (PostgreSQL refuses both):
    refused as a 422 naming where it is (a string, a nested value, a key), never passed on to a 500."""
    router = make_router()
    cases = {
        '{"title": "a\\u0000b"}': ["title"],
        '{"title": "ok", "meta": {"k": "\\u0000"}}': ["meta.k"],
        '{"title": "ok", "meta": {"\\u0000": 1}}': ["meta"],
        '{"title": "ok", "meta": {"\\u0000": 1, "k": "\\u0000"}}': ["meta", "meta.k"],
        '{"title": "ok", "meta": {"list": ["x", "\\ud800"]}}': ["meta.list.1"],
        '"\\u0000"': ["body"],
    }
    for body, fields in cases.items():
        status, payload, _ = call(router, "POST", "/things/1", body, {"Content-Type": "application/json"})
        assert status == 422, (body, payload)
        assert payload["error"]["code"] == "validation_error"
        assert [d["field"] for d in payload["error"]["details"]] == fields, body
    # An escaped backslash before u0000 is text, not a NUL: stored as it is.
    status, payload, _ = call(router, "POST", "/things/1", '{"title": "a\\\\u0000"}')
    assert status == 201, payload


def test_a_body_that_is_not_json_by_its_media_type_is_a_415() -> None:
    router = make_router()
    status, payload, _ = call(router, "POST", "/things/1", "title=x", {"Content-Type": "text/plain"})
    assert status == 415 and payload["error"]["code"] == "unsupported_media_type"
    status, payload, _ = call(router, "POST", "/things/1", '{"title": "x"}', {"Content-Type": "application/merge+json"})
    assert status == 201, payload


class Strict(StrictBody):
    title: str
    note: str | None = None


def test_strict_bodies_refuse_null_and_unknown_fields() -> None:
    """StrictBody: null is never a value (an optional field is left out instead) and unknown fields are refused,
    each a 422 with a message that says what to do; the same body without them is accepted."""
    router = Router("t", [], max_body_bytes=1000)

    @router.route("POST", "/strict")
    def strict(ctx):  # noqa: ANN001, ANN202
        return ctx.json(Strict).model_dump(exclude_none=True), 200

    status, payload, _ = call(router, "POST", "/strict", '{"title": "a", "note": null}')
    assert status == 422, payload
    assert "null is not a value for note" in json.dumps(payload)
    status, payload, _ = call(router, "POST", "/strict", '{"title": "a", "extra": 1}')
    assert status == 422 and "extra" in json.dumps(payload), payload
    assert call(router, "POST", "/strict", '{"title": "a"}')[:2] == (200, {"title": "a"})
    assert call(router, "POST", "/strict", '{"title": "a", "note": "n"}')[:2] == (200, {"title": "a", "note": "n"})


def test_a_value_the_database_refuses_is_a_422_that_quotes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """A data exception from the database (SQLSTATE class 22, e.g. a number out of range) that validation let
    through is the caller's input: 422 invalid_value, logged as info with the SQLSTATE, the database's text (it
    may quote the value) in neither the answer nor the log; any other database error stays a 500."""
    import pg8000.dbapi

    router = Router("t", [], max_body_bytes=1000)
    fields = {"S": "ERROR", "C": "22003", "M": "value 99999999999 is out of range for type integer"}

    @router.route("GET", "/refused")
    def refused(ctx):  # noqa: ANN001, ANN202
        raise pg8000.dbapi.DatabaseError(fields)

    @router.route("GET", "/broken")
    def broken(ctx):  # noqa: ANN001, ANN202
        raise pg8000.dbapi.DatabaseError({**fields, "C": "42P01", "M": "relation missing"})

    with caplog.at_level("INFO"):
        status, payload, _ = call(router, "GET", "/refused")
    assert status == 422 and payload["error"]["code"] == "invalid_value", payload
    assert "99999999999" not in json.dumps(payload) and "22003" not in json.dumps(payload)
    logged = [r for r in caplog.records if r.getMessage() == "value refused by the database"]
    assert [getattr(r, "reason", None) for r in logged] == ["SQLSTATE 22003"]
    assert "99999999999" not in caplog.text
    status, payload, _ = call(router, "GET", "/broken")
    assert status == 500 and payload["error"]["code"] == "internal"


def test_a_body_with_many_unstorable_strings_names_at_most_twenty() -> None:
    """The 422's details are bounded: a body with 25 unstorable strings names 20 of them, not all."""
    body = json.dumps({"title": "ok", "m": {f"{i:02d}": "\u0000" for i in range(25)}}, separators=(",", ":"))
    router = Router("t", [], max_body_bytes=1000)
    router.route("POST", "/things/{thing_id}")(lambda ctx: ({"title": ctx.json(Body).title}, 201))
    status, payload, _ = call(router, "POST", "/things/1", body)
    assert status == 422 and len(payload["error"]["details"]) <= 20, payload
    assert payload["error"]["details"][0]["field"] == "m.00"
