"""OTLP/HTTP trace export requests (``POST /v1/traces``) to usage rows.

The body is an ``ExportTraceServiceRequest``, as protobuf (``application/x-protobuf``) or as OTLP/JSON
(``application/json``), optionally gzip-compressed. Protobuf is decoded by the official generated classes of
the ``opentelemetry-proto`` package; OTLP/JSON differs from protobuf's canonical JSON mapping only in that
trace and span ids are hex instead of base64, so the ids are converted and protobuf's own JSON parser reads
the rest (camelCase keys, 64-bit integers as strings or numbers, enums as integers).

A span becomes a usage row when it describes one model call under the OpenTelemetry GenAI semantic
conventions: it names a model (``gen_ai.response.model`` or ``gen_ai.request.model``) and carries token usage
or an error status, and it is not an agent or tool span (whose usage, where present, sums the calls below it).
Token attributes follow the conventions: ``gen_ai.usage.input_tokens`` includes cache reads and cache writes,
``gen_ai.usage.output_tokens`` includes reasoning, so the platform's five buckets are

    input  = input_tokens - cache_read - cache_creation   (never below 0)
    cached = cache_read, cache_write = cache_creation
    output = output_tokens - reasoning, reasoning = reasoning

and no token is counted twice. The span id (hex) is the record's request_id: an exporter that retries a batch
sends the same span ids, and the store skips ids it already holds.
"""

from __future__ import annotations

import base64
import functools
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from functions.agent.usage.schema import RowError, UsageRow, build_row
from shared.errors import NetraError

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

# Alternatives per field, first found wins: current semantic conventions, then older or vendor spellings
# (OpenLLMetry and earlier releases of the conventions).
PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system")
MODEL_KEYS = ("gen_ai.response.model", "gen_ai.request.model")
INPUT_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
OUTPUT_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
CACHE_READ_KEYS = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.input_tokens.cached",
)
CACHE_WRITE_KEYS = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "gen_ai.usage.input_tokens.cache_write",
)
REASONING_KEYS = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.output_tokens.reasoning",
    "gen_ai.usage.reasoning_tokens",
)
# Spans that wrap model calls rather than being one: their usage, where an instrumentation sets it, is the sum
# of the calls below them, which arrive as spans of their own.
NOT_A_CALL = {"invoke_agent", "create_agent", "execute_tool", "invoke_workflow"}
# Provider names of the conventions that differ from the price catalog's.
PROVIDER_ALIASES = {
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "vertex_ai": "google",
    "gemini": "google",
    "az.ai.openai": "azure",
    "azure.ai.openai": "azure",
    "az.ai.inference": "azure",
    "azure.ai.inference": "azure",
    "aws.bedrock": "bedrock",
}
DEFAULT_FEATURE_ATTRIBUTE = "service.name"
DEFAULT_END_USER_ATTRIBUTE = "user.id"
STATUS_CODE_ERROR = 2
MAX_MESSAGES = 5  # problems quoted in a partial-success message


class PayloadError(NetraError, ValueError):
    """The request body as a whole cannot be read: 400 (or 415 for a media type we do not take)."""

    def __init__(self, message: str, status: int = 400, code: str = "invalid_payload") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


@dataclass
class Mapped:
    """What one request held: rows to store, spans that are not model calls, spans refused with why."""

    rows: list[UsageRow] = field(default_factory=list)
    ignored: int = 0
    rejected: int = 0
    problems: list[str] = field(default_factory=list)

    def reject(self, what: str, reason: str) -> None:
        self.rejected += 1
        if len(self.problems) < MAX_MESSAGES:
            self.problems.append(f"{what}: {reason}")

    @property
    def message(self) -> str:
        if not self.rejected:
            return ""
        more = self.rejected - len(self.problems)
        return "; ".join(self.problems) + (f"; and {more} more" if more > 0 else "")


# -- decoding -------------------------------------------------------------------------------------------------
def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def decode(body: bytes, content_type: str | None) -> Any:
    """The ExportTraceServiceRequest of a (decompressed) body; PayloadError when it cannot be read."""
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    kind = media_type(content_type)
    if kind == PROTOBUF:
        try:
            return ExportTraceServiceRequest.FromString(body)
        except (DecodeError, ValueError, RecursionError) as exc:
            raise PayloadError(f"the body is not a valid OTLP protobuf ExportTraceServiceRequest ({exc})") from None
    if kind == JSON:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise PayloadError(f"the body is not valid JSON ({str(exc)[:120]})") from None
        if not isinstance(data, dict):
            raise PayloadError("the body must be a JSON object (an OTLP ExportTraceServiceRequest)")
        _hex_ids_to_base64(data)
        try:
            return json_format.ParseDict(data, ExportTraceServiceRequest(), ignore_unknown_fields=True)
        except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
            raise PayloadError(f"the body is not a valid OTLP/JSON ExportTraceServiceRequest ({exc})") from None
    raise PayloadError(
        f"Content-Type must be {PROTOBUF} or {JSON}, got {kind or 'none'!r}", 415, "unsupported_media_type"
    )


def _hex_ids_to_base64(data: dict[str, Any]) -> None:
    """OTLP/JSON carries ids as hex; protobuf's JSON parser expects base64 for bytes fields."""
    for resource_spans in _list(data, "resourceSpans", "resource_spans"):
        for scope_spans in _list(resource_spans, "scopeSpans", "scope_spans"):
            for span in _list(scope_spans, "spans"):
                if not isinstance(span, dict):
                    continue
                _convert(span, ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id"))
                for link in _list(span, "links"):
                    if isinstance(link, dict):
                        _convert(link, ("traceId", "trace_id", "spanId", "span_id"))


def _list(parent: Any, *keys: str) -> list[Any]:
    if not isinstance(parent, dict):
        return []
    for key in keys:
        value = parent.get(key)
        if isinstance(value, list):
            return value
    return []


def _convert(obj: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str) and value:
            try:
                obj[key] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                raise PayloadError(f"{key} must be a hex string, got {value[:40]!r}") from None


# -- mapping --------------------------------------------------------------------------------------------------
def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    if kind == "bytes_value":
        return any_value.bytes_value.hex()
    return getattr(any_value, kind)


def attributes(key_values: Any, wanted: frozenset[str] | None = None) -> dict[str, Any]:
    """The attributes as a dict; with ``wanted``, only those keys and ``gen_ai.*``: most spans of an instrumented
    app (HTTP, database) are not model calls, and their attributes need no conversion to be ignored."""
    if wanted is None:
        return {kv.key: _value(kv.value) for kv in key_values}
    return {kv.key: _value(kv.value) for kv in key_values if kv.key in wanted or kv.key.startswith("gen_ai.")}


def _first(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def _tokens(value: Any, name: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RowError(name, f"must be a whole number, got {str(value)[:40]!r}")
    try:
        number = float(value)
    except ValueError:
        raise RowError(name, f"must be a whole number, got {str(value)[:40]!r}") from None
    if not math.isfinite(number) or number < 0 or number != int(number):
        raise RowError(name, f"must be a whole number of at least 0, got {str(value)[:40]!r}")
    return int(number)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, list | dict) else str(value)
    return text.strip() or None


def is_model_call(attrs: dict[str, Any], error: bool) -> bool:
    if _first(attrs, MODEL_KEYS) is None:
        return False
    if str(attrs.get("gen_ai.operation.name") or "") in NOT_A_CALL:
        return False
    has_usage = any(_first(attrs, keys) is not None for keys in (INPUT_KEYS, OUTPUT_KEYS))
    return has_usage or error


@functools.lru_cache(maxsize=64)
def _wanted(feature_key: str, end_user_key: str) -> frozenset[str]:
    return frozenset(("error.type", feature_key, end_user_key))


def span_row(
    span: Any,
    resource: dict[str, Any],
    feature_attribute: str | None = None,
    end_user_attribute: str | None = None,
) -> dict[str, Any] | None:
    """The span as a dict in the project's usage schema; None when it is not a model call. RowError when it is
    one but cannot be read."""
    feature_key = feature_attribute or DEFAULT_FEATURE_ATTRIBUTE
    end_user_key = end_user_attribute or DEFAULT_END_USER_ATTRIBUTE
    attrs = attributes(span.attributes, _wanted(feature_key, end_user_key))
    error = span.status.code == STATUS_CODE_ERROR or bool(attrs.get("error.type"))
    if not is_model_call(attrs, error):
        return None
    input_total = _tokens(_first(attrs, INPUT_KEYS), "gen_ai.usage.input_tokens")
    output_total = _tokens(_first(attrs, OUTPUT_KEYS), "gen_ai.usage.output_tokens")
    cache_read = _tokens(_first(attrs, CACHE_READ_KEYS), "gen_ai.usage.cache_read.input_tokens")
    cache_write = _tokens(_first(attrs, CACHE_WRITE_KEYS), "gen_ai.usage.cache_creation.input_tokens")
    reasoning = _tokens(_first(attrs, REASONING_KEYS), "gen_ai.usage.reasoning.output_tokens")
    provider = _text(_first(attrs, PROVIDER_KEYS))
    if provider is not None:
        provider = PROVIDER_ALIASES.get(provider.lower(), provider.lower())
    started, ended = span.start_time_unix_nano, span.end_time_unix_nano
    if not started:
        raise RowError("start_time_unix_nano", "is required")
    try:
        timestamp = datetime.fromtimestamp(started / 1e9, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        raise RowError("start_time_unix_nano", f"is not a time, got {started}") from None
    return {
        "request_id": span.span_id.hex() or None,
        "timestamp": timestamp,
        "provider": provider,
        "model": _text(_first(attrs, MODEL_KEYS)),
        "input_tokens": max(0, input_total - cache_read - cache_write),
        "cached_input_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "output_tokens": max(0, output_total - reasoning),
        "reasoning_tokens": reasoning,
        "latency_ms": round((ended - started) / 1e6) if ended >= started else None,
        "status": "error" if error else "ok",
        "feature": _text(attrs.get(feature_key, resource.get(feature_key))),
        "end_user": _text(attrs.get(end_user_key, resource.get(end_user_key))),
        "max_tokens": _tokens(attrs.get("gen_ai.request.max_tokens"), "gen_ai.request.max_tokens") or None,
    }


def map_request(
    request: Any, feature_attribute: str | None = None, end_user_attribute: str | None = None
) -> tuple[Mapped, int]:
    """(rows, ignored and rejected spans with reasons; total spans) of an ExportTraceServiceRequest."""
    mapped = Mapped()
    total = 0
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                total += 1
                what = f"span {span.span_id.hex() or '(no id)'}"
                try:
                    raw = span_row(span, resource, feature_attribute, end_user_attribute)
                except RowError as exc:
                    mapped.reject(what, f"{exc.field}: {exc.reason}")
                    continue
                if raw is None:
                    mapped.ignored += 1
                    continue
                if not raw["request_id"]:
                    mapped.reject(what, "span_id is required (it is the idempotency key)")
                    continue
                try:  # build_row validates every field and raises the first problem (one is all we report)
                    mapped.rows.append(build_row(raw))
                except RowError as exc:
                    mapped.reject(what, f"{exc.field}: {exc.reason}")
    return mapped, total


def response_body(mapped: Mapped, kind: str) -> tuple[bytes, str]:
    """ExportTraceServiceResponse in the request's encoding; partial_success only when spans were refused."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    response = ExportTraceServiceResponse()
    if mapped.rejected:
        response.partial_success.rejected_spans = mapped.rejected
        response.partial_success.error_message = mapped.message
    if kind == PROTOBUF:
        return response.SerializeToString(), PROTOBUF
    return json.dumps(json_format.MessageToDict(response)).encode(), JSON


def error_body(status: int, code: str, message: str, kind: str) -> tuple[bytes, str]:
    """OTLP/HTTP answers a failed request with a google.rpc.Status in the request's encoding. The JSON form
    also carries the platform's usual ``{"error": {code, message}}``."""
    from google.rpc import code_pb2, status_pb2

    rpc_code = {
        400: code_pb2.INVALID_ARGUMENT,
        401: code_pb2.UNAUTHENTICATED,
        413: code_pb2.INVALID_ARGUMENT,
        415: code_pb2.INVALID_ARGUMENT,
        429: code_pb2.RESOURCE_EXHAUSTED,
        503: code_pb2.UNAVAILABLE,
    }.get(status, code_pb2.UNKNOWN)
    if kind == PROTOBUF:
        return status_pb2.Status(code=rpc_code, message=f"{code}: {message}").SerializeToString(), PROTOBUF
    body = {"code": rpc_code, "message": message, "error": {"code": code, "message": message}}
    return json.dumps(body).encode(), JSON
