"""LiteLLM's generic logging callback (``callbacks: ["generic_api"]``) to usage rows.

LiteLLM posts its ``StandardLoggingPayload`` objects as a JSON array (its default ``json_array`` format), as
NDJSON, or one object per request (``single``). A payload carries the same fields as a row of the proxy's spend
logs under the same names (``prompt_tokens``, ``completion_tokens``, ``custom_llm_provider``, ``request_tags``,
``end_user``, ``cache_key``, ``metadata.usage_object``), except that its id is ``id`` and its times are epoch
seconds. So each payload is reshaped into a spend-log row and mapped by the spend-log importer's own rules
(``functions.agent.usage.formats``): one mapping, whichever way LiteLLM's data arrives.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from functions.agent.ingest.otlp import Mapped, PayloadError
from functions.agent.usage.formats import CONVERTERS
from functions.agent.usage.schema import RowError, build_row


def _iso(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value, UTC).isoformat()
    return value


def spend_log_row(payload: dict[str, Any]) -> dict[str, Any]:
    """A StandardLoggingPayload in the shape of a LiteLLM_SpendLogs row."""
    metadata = payload.get("metadata") if isinstance(payload.get("metadata"), dict) else {}
    parameters = payload.get("model_parameters") if isinstance(payload.get("model_parameters"), dict) else {}
    return {
        "request_id": payload.get("id") or payload.get("litellm_call_id"),
        "startTime": _iso(payload.get("startTime")),
        "endTime": _iso(payload.get("endTime")),
        "model": payload.get("model"),
        "model_group": payload.get("model_group"),
        "custom_llm_provider": payload.get("custom_llm_provider"),
        "prompt_tokens": payload.get("prompt_tokens"),
        "completion_tokens": payload.get("completion_tokens"),
        "metadata": metadata,
        "request_tags": payload.get("request_tags") or [],
        "end_user": payload.get("end_user") or metadata.get("user_api_key_end_user_id"),
        "status": payload.get("status"),
        "cache_key": payload.get("cache_key"),
        "max_tokens": parameters.get("max_tokens") or parameters.get("max_completion_tokens"),
    }


def map_payload(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise RowError("(payload)", "must be a JSON object (a LiteLLM StandardLoggingPayload)")
    row = spend_log_row(payload)
    data = CONVERTERS["litellm"](row)
    if row["max_tokens"]:
        data["max_tokens"] = row["max_tokens"]
    return data


def parse(body: bytes) -> list[Any]:
    """The payloads of a body in any of the callback's log formats; PayloadError when it is not JSON."""
    try:
        text = body.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise PayloadError("the body must be UTF-8 JSON") from None
    if not text:
        raise PayloadError("the body is empty (expected LiteLLM StandardLoggingPayload JSON)")
    try:
        if text.startswith("["):
            items = json.loads(text)
        elif "\n" in text:
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            items = [json.loads(text)]
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"the body is not valid JSON or NDJSON ({str(exc)[:120]})") from None
    if not isinstance(items, list):
        raise PayloadError("the body must be a JSON array, NDJSON or one JSON object")
    return items


def map_body(body: bytes) -> tuple[Mapped, int]:
    mapped = Mapped()
    items = parse(body)
    for index, item in enumerate(items, start=1):
        what = f"payload {index}"
        if isinstance(item, dict) and item.get("id"):
            what += f" ({str(item['id'])[:60]})"
        try:
            raw = map_payload(item)
        except RowError as exc:
            mapped.reject(what, f"{exc.field}: {exc.reason}")
            continue
        try:  # build_row validates every field and raises the first problem (one is all we report)
            mapped.rows.append(build_row(raw))
        except RowError as exc:
            mapped.reject(what, f"{exc.field}: {exc.reason}")
    return mapped, len(items)
