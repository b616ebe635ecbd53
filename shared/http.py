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
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from shared.errors import ApiError, transient_dependency_error
from shared.logging import parse_trace_header, request_id_var, trace_var

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


@dataclass
class Ctx:
    """What a handler gets: the request, path parameters and helpers."""

    request: Any
    params: dict[str, str]
    request_id: str
    state: dict[str, Any] = field(default_factory=dict)

    def json(self, model: type[M]) -> M:
        raw = self.request.get_data(cache=True) or b"{}"
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "invalid_json", "request body is not valid JSON") from None
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
        health: Callable[[str], tuple[int, dict[str, Any], dict[str, str]]] | None = None,
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
            if unavailable is None:
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
        if path.startswith("/health/") and self._health is not None and request.method == "GET":
            kind = path.removeprefix("/health/")
            if kind in ("live", "ready", "startup"):
                return self._health(kind)
        if request.content_length and request.content_length > self.max_body_bytes:
            raise ApiError(
                413,
                "payload_too_large",
                f"request body exceeds {self.max_body_bytes} bytes",
                {"limit_bytes": self.max_body_bytes},
            )
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
