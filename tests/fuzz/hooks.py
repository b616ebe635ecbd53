"""Schemathesis hooks for the fuzz runs (loaded with SCHEMATHESIS_HOOKS=tests.fuzz.hooks): how to send the
media types of POST /api/usage that schemathesis has no serializer for."""

from __future__ import annotations

import json
from typing import Any

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: Any, value: Any) -> bytes:
    """A generated string as the body itself; a generated list or object as one JSON line per item."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    items = value if isinstance(value, list) else [value]
    return "".join(json.dumps(item) + "\n" for item in items).encode("utf-8", "surrogatepass")
