"""Structured logs for Cloud Logging, readable text locally, and no secrets either way."""

from __future__ import annotations

import json
import logging

from shared.logging import JsonFormatter, TextFormatter, parse_trace_header, redact, request_id_var, trace_var


def record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("svc", logging.WARNING, __file__, 1, msg, (), None)
    rec.__dict__.update(extra)
    return rec


def test_json_has_cloud_logging_fields() -> None:
    token_t = trace_var.set("0af7651916cd43dd8448eb211c80319c")
    token_r = request_id_var.set("req-1")
    try:
        line = JsonFormatter("auth", "proj-1").format(record("hello %s", component="database"))
    finally:
        trace_var.reset(token_t)
        request_id_var.reset(token_r)
    entry = json.loads(line)
    assert entry["severity"] == "WARNING" and entry["message"] == "hello %s"
    assert entry["logging.googleapis.com/trace"] == "projects/proj-1/traces/0af7651916cd43dd8448eb211c80319c"
    assert entry["request_id"] == "req-1" and entry["service"] == "auth" and entry["instance"]
    assert entry["component"] == "database"


def test_trace_header_parsing() -> None:
    assert parse_trace_header("105445aa7843bc8bf206b12000100000/1;o=1") == "105445aa7843bc8bf206b12000100000"
    assert parse_trace_header("garbage value") is None
    assert parse_trace_header(None) is None


def test_tokens_and_passwords_are_redacted() -> None:
    jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlc2lnbmF0dXJl"
    text = f"auth header Bearer {jwt} url postgresql://netra:pw123@host/db query ?code=abc123&state=x password=hunter2"
    cleaned = redact(text)
    for secret in (jwt, "pw123", "abc123", "hunter2"):
        assert secret not in cleaned
    line = TextFormatter("auth").format(record(text, detail=f"token={jwt}"))
    assert jwt not in line and "hunter2" not in line
