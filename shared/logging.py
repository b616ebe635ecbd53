"""Structured logs: one JSON object per line that Cloud Logging understands, or one readable text
line locally. Request-scoped fields (trace, request id) come from context variables set per request.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

trace_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace", default=None)
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

INSTANCE_ID = os.environ.get("K_REVISION", "local") + "-" + uuid.uuid4().hex[:8]

# Defence in depth: whatever a caller logs by mistake, bearer tokens and JWTs are masked.
_SECRET_PATTERNS = [
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)((?:password|secret|token|code|ticket)=)[^&\s\"']+"),
    re.compile(r"(postgres(?:ql)?://[^:/\s]+:)[^@\s]+(@)"),
]

_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(
            lambda m: (m.group(1) if m.groups() else "") + "[REDACTED]" + (m.group(2) if len(m.groups()) > 1 else ""),
            text,
        )
    return text


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STD_ATTRS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str, project: str) -> None:
        super().__init__()
        self.service = service
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname if record.levelname != "WARNING" else "WARNING",
            "message": redact(record.getMessage()),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
            "service": self.service,
            "instance": INSTANCE_ID,
        }
        trace = trace_var.get()
        if trace:
            entry["logging.googleapis.com/trace"] = f"projects/{self.project}/traces/{trace}"
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in _extras(record).items():
            entry[key] = value if isinstance(value, int | float | bool | type(None)) else redact(str(value))
        if record.exc_info:
            entry["stack_trace"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={redact(str(v))}" for k, v in _extras(record).items())
        rid = request_id_var.get()
        line = (
            f"{datetime.fromtimestamp(record.created).strftime('%H:%M:%S.%f')[:-3]} "
            f"{record.levelname:<7} {self.service} {record.name}: {redact(record.getMessage())}"
        )
        if rid:
            line += f" request_id={rid}"
        if extras:
            line += " " + extras
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


def configure_logging(service: str, level: str = "INFO", fmt: str = "auto", project: str = "netra-local") -> None:
    """Install one handler on the root logger (idempotent)."""
    if fmt == "auto":
        fmt = (
            "json"
            if os.environ.get("K_SERVICE") or os.environ.get("NETRA_ENV") in ("staging", "production")
            else "text"
        )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service, project) if fmt == "json" else TextFormatter(service))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_netra", False):
            root.removeHandler(existing)
    handler._netra = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("urllib3", "google.auth", "grpc", "werkzeug", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def parse_trace_header(value: str | None) -> str | None:
    """``X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1`` -> TRACE_ID."""
    if not value:
        return None
    trace = value.split("/", 1)[0].strip()
    return trace if re.fullmatch(r"[0-9a-fA-F]{1,64}", trace) else None
