"""Property tests (hypothesis) of the parsers that take outside input: whatever comes in, each raises nothing
but its own validation error (issue 15). In-process and fast; the HTTP surface is fuzzed by
test_openapi_fuzz.py.

- usage uploads (functions/agent/usage/formats.py + store.validate_body): JSONL, a JSON array, CSV, the
  LiteLLM and provider-log formats -> only formats.BodyError (the body) or per-row errors in the result;
- WebSocket client frames (shared/models/ws.py, as ws_bridge parses them) -> only pydantic's ValidationError,
  which the bridge turns into an error frame without raising;
- return_to and redirect handling (functions/auth/signin.py) -> a bool / a URL, never an exception;
- JSON bodies of the HTTP toolkit (shared/http.parse_json) -> only ApiError 400/422.

The Markdown renderer is JavaScript only (functions/ws_bridge/static/markdown.js, run in the browser); it has
no Python side to test here. The page's tests (tests/web) drive it in a real browser.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from functions.agent.usage import formats
from functions.agent.usage.schema import FIELD_DOCS
from functions.agent.usage.store import validate_body
from functions.auth.signin import return_to_allowed, with_params
from functions.ws_bridge.frames import _validation_code, frames
from shared.errors import ApiError
from shared.http import parse_json

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))

# Keys the converters look at, so generated rows reach deep into them (plus anything else).
KNOWN_KEYS = sorted(
    set(FIELD_DOCS)
    | {
        "ts", "startTime", "endTime", "prompt_tokens", "completion_tokens", "metadata", "usage_object",
        "prompt_tokens_details", "completion_tokens_details", "cached_tokens", "reasoning_tokens", "request_tags",
        "call_type", "spend", "usage", "usageMetadata", "response", "request", "body", "custom_id", "status_code",
        "promptTokenCount", "candidatesTokenCount", "cachedContentTokenCount", "thoughtsTokenCount",
        "cache_read_input_tokens", "cache_creation_input_tokens", "input_tokens_details", "output_tokens_details",
        "messages", "input", "contents", "system", "instructions", "role", "content", "max_tokens", "user",
        "error", "created", "object", "type", "model_group", "custom_llm_provider", "cache_key", "end_user",
    }
)  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["inf", "-inf", "nan", "1e400", "", " ", "2025-11-03T14:05:00Z", "\x00", "\ud800", "{", "[1"])
    | st.text(max_size=30)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)
ROWS = st.dictionaries(st.sampled_from(KNOWN_KEYS), JSON_VALUES, max_size=12)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)  # ensure_ascii: lone surrogates become \ud800 escapes, as a client sends


def _csv(rows: list[dict[str, Any]]) -> str:
    header = sorted({k for row in rows for k in row}) or ["model"]
    out = io.StringIO()
    writer = csv.DictWriter(out, header)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (v if isinstance(v, str) else _dumps(v)) for k, v in row.items()})
    return out.getvalue()


def _check_upload(body: bytes, content_type: str, fmt: str) -> None:
    try:
        result = validate_body(body, content_type, fmt)
    except formats.BodyError as exc:
        assert exc.code and exc.message
        return
    assert result.received >= len(result.rows) and (result.error_count > 0) == (len(result.rows) < result.received)
    json.dumps(result.errors)  # what the 422 answer carries must serialise


FORMATS = st.sampled_from(formats.FORMATS)


@SETTINGS
@given(st.lists(ROWS, min_size=1, max_size=5), FORMATS, st.sampled_from(["jsonl", "array", "csv"]))
def test_usage_upload_raises_only_its_own_errors(rows: list[dict[str, Any]], fmt: str, framing: str) -> None:
    if framing == "jsonl":
        body, content_type = "\n".join(_dumps(r) for r in rows), "application/x-ndjson"
    elif framing == "array":
        body, content_type = _dumps(rows), "application/json"
    else:
        body, content_type = _csv(rows), "text/csv"
    _check_upload(body.encode("utf-8", "surrogatepass"), content_type, fmt)


@SETTINGS
@given(st.binary(max_size=400) | st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass")), FORMATS)
def test_usage_upload_of_arbitrary_bytes_raises_only_its_own_errors(body: bytes, fmt: str) -> None:
    for content_type in ("application/x-ndjson", "application/json", "text/csv", ""):
        _check_upload(body, content_type, fmt)


@SETTINGS
@given(JSON_VALUES)
def test_websocket_client_frames_raise_only_validation_errors(value: Any) -> None:
    for text in (_dumps(value), _dumps({"type": "subscribe", "thread_id": value}), _dumps({"type": value})):
        try:
            frames.validate_json(text)
        except ValidationError as exc:
            code, message = _validation_code(exc)
            assert code in ("invalid_json", "unknown_frame", "invalid_frame") and message


@SETTINGS
@given(st.text(max_size=200))
def test_websocket_client_frames_of_arbitrary_text(text: str) -> None:
    for candidate in (text, "[" * 300 + text, '{"type":"chat","content":' + text):
        try:
            frames.validate_json(candidate)
        except ValidationError as exc:
            assert _validation_code(exc)[0] in ("invalid_json", "unknown_frame", "invalid_frame")


URL_PARTS = st.sampled_from(
    ["http://", "https://", "//", "app.example.com", ":8080", ":99999", "@", "\uff0f", "\uff20", "\\", "/", "?",
     "#", "%2F", "[", "]", "::1", "xn--", "é", " ", "\x00", "\ud800", "javascript:", "localhost", "code=1&"]
)  # fmt: skip


@SETTINGS
@given(st.lists(URL_PARTS | st.text(max_size=10), max_size=8).map("".join))
def test_return_to_and_redirects_never_raise(url: str) -> None:
    allowed = return_to_allowed(url, ["https://app.example.com", "http://localhost:*"])
    assert isinstance(allowed, bool)
    if allowed:
        assert url.startswith(("https://app.example.com", "http://localhost"))
        assert with_params(url, code="c" * 20).count("code=") == 1


@SETTINGS
@given(JSON_VALUES | st.text(max_size=100))
def test_parse_json_raises_only_api_errors(value: Any) -> None:
    for raw in (_dumps(value) if not isinstance(value, str) else value, "[" * 200 + "1"):
        try:
            parse_json(raw.encode("utf-8", "surrogatepass"))
        except ApiError as exc:
            assert exc.status in (400, 422) and exc.code in ("invalid_json", "json_too_deep", "validation_error")
