"""A small HTTP toolkit for the functions: routing inside one function, JSON error bodies, pydantic
request validation, CORS from an allow-list, bearer-token extraction, request ids and health routes.

Written here rather than taken from a web framework because functions-framework already hands us a
Flask request per call; all we need is the dispatch and the error discipline, shared by auth and agent.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from shared.errors import ApiError, transient_dependency_error, unstorable_value_error
from shared.logging import parse_trace_header, request_id_var, trace_var
from shared.startup import HealthAnswer, HealthKind

log = logging.getLogger("http")

M = TypeVar("M", bound=BaseModel)
Handler = Callable[..., Any]


def origin_allowed(origin: str | None, allowed: list[str]) -> bool:
    """Exact match, or ``scheme://host:*`` for any port (development only, enforced by config)."""
    if not origin:
        return False
    origin = origin.rstrip("/")
    for pattern in allowed:
        if pattern == origin:
            return True
        if pattern.endswith(":*") and re.fullmatch(re.escape(pattern[:-2]) + r"(:\d{1,5})?", origin):
            return True
    return False


def bearer_token(headers: Any) -> str | None:
    value = headers.get("Authorization") or ""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def validation_details(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
        for e in exc.errors(include_input=False)
    ]


HEALTH_PATHS = {f"/health/{kind}" for kind in HealthKind}
MAX_JSON_DEPTH = 32  # no request body of ours nests deeper; deeper input is refused before it costs anything
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def json_depth_exceeds(raw: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if the JSON text nests arrays/objects deeper than ``limit``.

    Counted on the text before parsing, so ``[`` x 100,000 is refused in one linear pass instead of reaching
    the parser's recursion limit (RecursionError) or building a structure every later step walks recursively.
    Strings are cut out first (brackets inside them do not count); the regexes do the scanning in C, Python
    only sums the brackets. Hand-written: the json module has no depth option.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", data).translate(_BRACKET_STEP, _NOT_BRACKET)
    # +1 per opener, -1 per closer as signed bytes; the running sum is the depth (all summed in C).
    return bool(brackets) and max(accumulate(memoryview(brackets).cast("b"))) > limit


def parse_json(raw: bytes | str, limit: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` with a nesting cap: ApiError 400 ``invalid_json`` or ``json_too_deep``, nothing else."""
    if json_depth_exceeds(raw, limit):
        raise ApiError(400, "json_too_deep", f"request body nests deeper than {limit} levels")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "invalid_json", "request body is not valid JSON") from None
    if _UNSTORABLE_ESCAPE.search(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw):
        problems = unstorable_strings(data)
        if problems:
            raise ApiError(
                422,
                "validation_error",
                "request body is invalid",
                [{"field": f, "message": UNSTORABLE_MESSAGE} for f in problems[:20]],
            )
    return data


# A NUL character or an unpaired surrogate can be written in JSON (as an escape) but stored nowhere: PostgreSQL
# refuses both in text and jsonb (SQLSTATE 22021 / 22P05), and UTF-8 cannot encode a lone surrogate.
UNSTORABLE_MESSAGE = "must not contain NUL characters (\\u0000) or unpaired surrogates"
_UNSTORABLE_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def _unstorable(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def unstorable_strings(data: Any, path: str = "") -> list[str]:
    """Paths (``metadata.k``, ``items.0``) of keys and strings that cannot be stored; walked iteratively."""
    found: list[str] = []
    stack: list[tuple[Any, str]] = [(data, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            if _unstorable(value):
                found.append(where or "body")
        elif isinstance(value, dict):
            for key, item in value.items():
                child = f"{where}.{key}" if where else str(key)
                if _unstorable(key):
                    found.append(where or "body")
                    continue
                stack.append((item, child))
        elif isinstance(value, list):
            stack.extend((item, f"{where}.{i}" if where else str(i)) for i, item in enumerate(value))
    return sorted(found)


def read_body(request: Any, max_bytes: int) -> bytes:
    """The request body, reading at most ``max_bytes`` + 1 bytes whatever the framing; 413 ``payload_too_large``
    past the limit. A chunked body has no Content-Length to check first: Flask's per-request
    ``max_content_length`` makes werkzeug bound the stream itself (it stops there, silently), so the limit is
    set one byte higher and a body that fills it is too large."""
    from werkzeug.exceptions import RequestEntityTooLarge

    too_large = ApiError(
        413, "payload_too_large", f"request body exceeds {max_bytes} bytes", {"limit_bytes": max_bytes}
    )
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    try:
        if getattr(request, "_cached_data", None) is None:
            request.max_content_length = max_bytes + 1
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise too_large from None
    if len(body) > max_bytes:
        raise too_large
    return body


class StrictBody(BaseModel):
    """A JSON request body in which null is never a value: an optional field is left out, not sent as null.

    One rule for every body instead of "null means absent" here and "null is invalid" there, so the OpenAPI
    documents can say ``type: string`` and mean it (schemathesis sends nulls to check exactly that). Unknown
    fields are refused too (``additionalProperties: false`` in the documents)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = sorted(k for k, v in data.items() if v is None and k in cls.model_fields)
            if nulls:
                raise ValueError(f"null is not a value for {', '.join(nulls)}; leave the field out instead")
        return data


@dataclass
class Ctx:
    """What a handler gets: the request, path parameters and helpers."""

    request: Any
    params: dict[str, str]
    request_id: str
    state: dict[str, Any] = field(default_factory=dict)

    def json(self, model: type[M]) -> M:
        raw = self.request.get_data(cache=True) or b"{}"
        media_type = (self.request.mimetype or "").lower()
        if raw.strip() and media_type and media_type != "application/json" and not media_type.endswith("+json"):
            raise ApiError(
                415, "unsupported_media_type", "send the request body as JSON (Content-Type: application/json)"
            )
        data = parse_json(raw)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ApiError(422, "validation_error", "request body is invalid", validation_details(exc)) from None

    def query(self, model: type[M]) -> M:
        try:
            return model.model_validate(dict(self.request.args.items()))
        except ValidationError as exc:
            raise ApiError(422, "validation_error", "query parameters are invalid", validation_details(exc)) from None

    @property
    def bearer(self) -> str | None:
        return bearer_token(self.request.headers)


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    template: str
    handler: Handler


def _compile(template: str) -> re.Pattern[str]:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template.rstrip("/") or "/")
    return re.compile(f"^{regex}/?$")


class Router:
    """Dispatches one function's requests. ``health`` returns (status, body, headers) for a kind."""

    def __init__(
        self,
        service: str,
        allowed_origins: list[str],
        max_body_bytes: int = 1_048_576,
        health: Callable[[HealthKind], HealthAnswer] | None = None,
    ) -> None:
        self.service = service
        self.allowed_origins = allowed_origins
        self.max_body_bytes = max_body_bytes
        self._routes: list[_Route] = []
        self._health = health

    def route(self, method: str, template: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self._routes.append(_Route(method.upper(), _compile(template), template, handler))
            return handler

        return register

    def routes(self) -> list[tuple[str, str]]:
        return [(r.method, r.template) for r in self._routes]

    # The functions-framework entry point.
    def __call__(self, request: Any) -> Any:
        from flask import Response

        request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        tokens = (
            request_id_var.set(request_id),
            trace_var.set(parse_trace_header(request.headers.get("X-Cloud-Trace-Context"))),
        )
        started = time.perf_counter()
        status, body, headers = 500, None, {}
        try:
            status, body, headers = self._dispatch(request, request_id)
        except ApiError as exc:
            status, body, headers = exc.status, exc.body(), dict(exc.headers)
        except Exception as exc:
            unavailable = transient_dependency_error(exc)
            refused = None if unavailable is not None else unstorable_value_error(exc)
            if refused is not None:
                # The database refused a value the request brought (SQLSTATE class 22): the caller's input,
                # not our failure. The database's own text stays in the log.
                log.info("value refused by the database", extra={"path": request.path, "reason": refused.log_reason})
                status, body, headers = refused.status, refused.body(), {}
            elif unavailable is None:
                log.exception("unhandled error", extra={"path": request.path})
                status, body = (
                    500,
                    {"error": {"code": "internal", "message": "internal error", "details": {"request_id": request_id}}},
                )
            else:
                log.warning("dependency unavailable", extra={"path": request.path, "reason": unavailable.message})
                status, body, headers = unavailable.status, unavailable.body(), dict(unavailable.headers)
        finally:
            request_id_var.reset(tokens[0])
            trace_var.reset(tokens[1])
        headers = {**self._cors(request), **headers, "X-Request-Id": request_id}
        if isinstance(body, Response):
            for key, value in headers.items():
                body.headers.setdefault(key, value)
            body.status_code = status if status != 200 else body.status_code
            return body
        elapsed = (time.perf_counter() - started) * 1000
        if status >= 500:
            log.warning(
                "request failed",
                extra={"method": request.method, "path": request.path, "status": status, "ms": round(elapsed, 1)},
            )
        payload = "" if body is None else json.dumps(body, default=str)
        return Response(
            payload, status=status, headers=headers, mimetype="application/json" if body is not None else None
        )

    def _cors(self, request: Any) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if not origin_allowed(origin, self.allowed_origins):
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Access-Control-Expose-Headers": "Retry-After, X-Request-Id",
            "Vary": "Origin",
        }

    def _dispatch(self, request: Any, request_id: str) -> tuple[int, Any, dict[str, str]]:
        path = request.path.rstrip("/") or "/"
        if request.method == "OPTIONS":
            if request.headers.get("Origin") and not origin_allowed(
                request.headers.get("Origin"), self.allowed_origins
            ):
                raise ApiError(403, "origin_not_allowed", "origin is not in the allow-list")
            return (
                204,
                None,
                {
                    "Access-Control-Allow-Methods": "GET, POST, PATCH, DELETE, OPTIONS",
                    "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Request-Id, Idempotency-Key",
                    "Access-Control-Max-Age": "600",
                },
            )
        if self._health is not None and path in HEALTH_PATHS:
            if request.method not in ("GET", "HEAD"):
                raise ApiError(
                    405, "method_not_allowed", f"{request.method} is not allowed here", headers={"Allow": "GET"}
                )
            return self._health(HealthKind(path.removeprefix("/health/")))
        # Read (bounded) before any handler runs: no route can parse an unbounded body, authenticated or not.
        read_body(request, self.max_body_bytes)
        allowed_methods = []
        for route in self._routes:
            match = route.pattern.match(path)
            if not match:
                continue
            if route.method != request.method:
                allowed_methods.append(route.method)
                continue
            result = route.handler(Ctx(request, match.groupdict(), request_id))
            return _normalise(result)
        if allowed_methods:
            raise ApiError(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed here",
                headers={"Allow": ", ".join(sorted(set(allowed_methods)))},
            )
        raise ApiError(404, "not_found", f"no route for {request.method} {path}")


def _normalise(result: Any) -> tuple[int, Any, dict[str, str]]:
    if isinstance(result, tuple):
        if len(result) == 2:
            return result[1], result[0], {}
        return result[1], result[0], result[2]
    if isinstance(result, BaseModel):
        return 200, result.model_dump(mode="json"), {}
    return 200, result, {}


def json_not_found(error: Exception) -> tuple[str, int, dict[str, str]]:
    """Register with ``functions_framework.errorhandler(404)``: a path the framework's catch-all route cannot
    match (werkzeug's path converter stops at a newline, found by schemathesis) never reaches our router, and
    Flask would answer an HTML page; it gets the same JSON 404 our router gives."""
    body = {"error": {"code": "not_found", "message": "no such route"}}
    return json.dumps(body), 404, {"Content-Type": "application/json"}
