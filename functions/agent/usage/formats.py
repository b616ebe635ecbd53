"""Input formats of ``POST /api/usage``, each mapped onto the project's schema (schema.py):

- ``netra``: JSONL, a JSON array, or CSV with a header, with the field names of ``schema.FIELD_DOCS``.
- ``litellm``: LiteLLM proxy spend logs (``LiteLLM_SpendLogs`` rows as JSON or CSV export: request_id,
  startTime, endTime, model, custom_llm_provider, prompt_tokens, completion_tokens, metadata.usage_object...).
- ``openai``: request logs that carry a provider ``usage`` object: OpenAI chat completions and Responses
  objects, OpenAI Batch API output lines, ``{"request": ..., "response": ...}`` log pairs, Anthropic messages
  (``cache_read_input_tokens``) and Gemini ``usageMetadata``.

Token conventions differ: OpenAI's prompt tokens include cached tokens and its completion tokens include
reasoning tokens; Anthropic's input tokens exclude cache reads and writes; Gemini's prompt count includes
cached content and its candidates count excludes thoughts. Everything is converted to our buckets, where the
five token fields never overlap.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from functions.agent.usage.schema import RowError, short_hash
from shared.errors import NetraError
from shared.http import MAX_JSON_DEPTH, json_depth_exceeds

FORMATS = ("auto", "netra", "litellm", "openai")


class BodyError(NetraError, ValueError):
    """The body as a whole cannot be read (not one row's problem)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class RawRow:
    row: int  # 1-based data row (header excluded)
    line: int | None  # 1-based line of the body, when the format is line-based
    data: dict[str, Any] | None  # in the project's schema; None when the row could not be mapped
    error: RowError | None = None


# -- reading the body -----------------------------------------------------------------------------------------
def _records(text: str, content_type: str) -> Iterator[tuple[int, int | None, Any]]:
    """(row, line, parsed object or a RowError) for JSONL, a JSON array or CSV."""
    stripped = text.lstrip()
    if not stripped:
        raise BodyError("empty_body", "the upload has no rows")
    if "csv" in content_type or (not stripped.startswith(("{", "[")) and "json" not in content_type):
        yield from _csv_records(text)
        return
    if stripped.startswith("["):
        if json_depth_exceeds(stripped, MAX_JSON_DEPTH + 1):  # + 1: the array that holds the rows
            raise BodyError("json_too_deep", f"the body nests deeper than {MAX_JSON_DEPTH} levels")
        try:
            items = json.loads(stripped)
        except (ValueError, RecursionError) as exc:
            raise BodyError("invalid_json", f"the body is not a valid JSON array: {str(exc)[:120]}") from None
        if not isinstance(items, list):
            raise BodyError("invalid_json", "the body is not a JSON array")
        for index, item in enumerate(items, start=1):
            yield index, None, item
        return
    row = 0
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row += 1
        yield row, line_no, _json_line(line)


def _json_line(line: str) -> Any:
    """One JSONL row, or the RowError that says why it cannot be read."""
    if json_depth_exceeds(line):
        return RowError("(line)", f"nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(line)
    except (ValueError, RecursionError) as exc:
        return RowError("(line)", f"not valid JSON: {str(exc)[:80]}")


def _csv_records(text: str) -> Iterator[tuple[int, int | None, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    try:
        fieldnames = reader.fieldnames
        if not fieldnames:
            raise BodyError("invalid_csv", "the CSV has no header row")
        header = [h.strip() for h in fieldnames]
        if len(set(header)) != len(header):
            raise BodyError("invalid_csv", "the CSV header repeats a column name")
        reader.fieldnames = header
        row = 0
        for record in reader:
            row += 1
            if None in record:
                yield row, reader.line_num, RowError("(line)", "has more values than the header has columns")
                continue
            yield row, reader.line_num, {k: v for k, v in record.items() if v is not None}
    except csv.Error as exc:
        # A field longer than the csv module's limit (128 KiB), a NUL in unquoted text...: the rest of the body
        # cannot be split into rows reliably, so the body as a whole is refused.
        raise BodyError("invalid_csv", f"the CSV cannot be read near line {reader.line_num}: {exc}") from None


def parse_body(body: bytes, content_type: str = "", fmt: str = "auto") -> tuple[str, list[RawRow]]:
    """(the format used, rows) for an upload body. Raises BodyError when the body cannot be read at all."""
    if fmt not in FORMATS:
        raise BodyError("invalid_format", f"format must be one of {', '.join(FORMATS)}")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BodyError("invalid_encoding", "the body must be UTF-8 text") from None
    rows: list[RawRow] = []
    used: set[str] = set()
    for row, line, item in _records(text, content_type.lower()):
        if isinstance(item, RowError):
            rows.append(RawRow(row, line, None, item))
            continue
        if not isinstance(item, dict):
            rows.append(RawRow(row, line, None, RowError("(row)", "must be a JSON object")))
            continue
        kind = detect(item) if fmt == "auto" else fmt
        used.add(kind)
        try:
            rows.append(RawRow(row, line, CONVERTERS[kind](item)))
        except RowError as exc:
            rows.append(RawRow(row, line, None, exc))
        except (TypeError, AttributeError, ValueError, OverflowError, RecursionError):
            # A value of a shape no converter expects (a list where an object belongs, a huge number...):
            # the row's problem, reported as such, never the request's 500.
            rows.append(RawRow(row, line, None, RowError("(row)", f"has a value of an unexpected type for {kind}")))
    if not rows:
        raise BodyError("empty_body", "the upload has no rows")  # e.g. a CSV header alone
    return ("+".join(sorted(used)) or fmt), rows


def detect(item: dict[str, Any]) -> str:
    keys = set(item)
    if {"startTime", "prompt_tokens"} <= keys or {"call_type", "spend"} <= keys:
        return "litellm"
    if keys & {"usage", "usageMetadata", "response", "body"} and not keys & {"input_tokens", "output_tokens"}:
        return "openai"
    return "netra"


# -- conversions ----------------------------------------------------------------------------------------------
def _netra(item: dict[str, Any]) -> dict[str, Any]:
    data = dict(item)
    if "timestamp" not in data and "ts" in data:
        data["timestamp"] = data.pop("ts")
    return data


def _json_field(value: Any, field: str) -> Any:
    if isinstance(value, str) and value.strip().startswith(("{", "[")):
        if json_depth_exceeds(value):
            raise RowError(field, f"nests deeper than {MAX_JSON_DEPTH} levels")
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            raise RowError(field, "is not valid JSON") from None
    return value


def _obj(value: Any, field: str) -> dict[str, Any]:
    """A nested object of a provider log ({} when absent); RowError when it is something else."""
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise RowError(field, "must be a JSON object")
    return value


def _int(value: Any) -> int:
    try:
        number = float(value or 0)
    except (TypeError, ValueError):
        return 0
    if not math.isfinite(number) or abs(number) > 1e15:
        raise RowError("tokens", f"token counts must be finite whole numbers, got {str(value)[:40]!r}")
    return int(number)


def _latency_ms(start: Any, end: Any) -> int | None:
    if not start or not end:
        return None
    try:
        started = datetime.fromisoformat(str(start).replace("Z", "+00:00").replace(" ", "T", 1))
        ended = datetime.fromisoformat(str(end).replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        return None
    if (started.tzinfo is None) != (ended.tzinfo is None):
        return None
    return max(0, round((ended - started).total_seconds() * 1000))


def _litellm(item: dict[str, Any]) -> dict[str, Any]:
    metadata = _json_field(item.get("metadata"), "metadata") or {}
    if not isinstance(metadata, dict):
        raise RowError("metadata", "must be a JSON object")
    usage = _obj(metadata.get("usage_object"), "metadata.usage_object")
    prompt = _int(item.get("prompt_tokens"))
    completion = _int(item.get("completion_tokens"))
    cached = _int(
        _obj(usage.get("prompt_tokens_details"), "metadata.usage_object.prompt_tokens_details").get("cached_tokens")
        or usage.get("cache_read_input_tokens")
    )
    written = _int(usage.get("cache_creation_input_tokens"))
    reasoning = _int(
        _obj(usage.get("completion_tokens_details"), "metadata.usage_object.completion_tokens_details").get(
            "reasoning_tokens"
        )
    )
    tags = _json_field(item.get("request_tags"), "request_tags") or []
    if isinstance(tags, str):
        tags = [tags]
    end_user = item.get("end_user") or item.get("user") or None
    status = item.get("status")
    if status is None and metadata.get("status"):
        status = metadata["status"]
    return {
        "request_id": item.get("request_id"),
        "timestamp": item.get("startTime"),
        "provider": item.get("custom_llm_provider") or None,
        "model": item.get("model") or item.get("model_group"),
        "input_tokens": max(0, prompt - cached - written),
        "cached_input_tokens": cached,
        "cache_write_tokens": written,
        "output_tokens": max(0, completion - reasoning),
        "reasoning_tokens": reasoning,
        "latency_ms": _latency_ms(item.get("startTime"), item.get("endTime")),
        "status": status,
        "feature": tags[0] if isinstance(tags, list) and tags else metadata.get("feature"),
        "end_user": end_user,
        "prefix_hash": metadata.get("prefix_hash"),
        "prefix_tokens": metadata.get("prefix_tokens"),
        "request_hash": item.get("cache_key") or None,
        "max_tokens": None,
        "interactive": None,
    }


def split_usage(usage: dict[str, Any]) -> dict[str, int]:
    """Our five buckets from any provider's usage object (see the module docstring for the conventions)."""
    if "promptTokenCount" in usage or "candidatesTokenCount" in usage:  # Gemini usageMetadata
        cached = _int(usage.get("cachedContentTokenCount"))
        return {
            "input_tokens": max(0, _int(usage.get("promptTokenCount")) - cached),
            "cached_input_tokens": cached,
            "cache_write_tokens": 0,
            "output_tokens": _int(usage.get("candidatesTokenCount")),
            "reasoning_tokens": _int(usage.get("thoughtsTokenCount")),
        }
    if "cache_read_input_tokens" in usage or "cache_creation_input_tokens" in usage:  # Anthropic
        return {
            "input_tokens": _int(usage.get("input_tokens")),
            "cached_input_tokens": _int(usage.get("cache_read_input_tokens")),
            "cache_write_tokens": _int(usage.get("cache_creation_input_tokens")),
            "output_tokens": _int(usage.get("output_tokens")),
            "reasoning_tokens": 0,
        }
    if "prompt_tokens" in usage or "completion_tokens" in usage:  # OpenAI chat completions
        cached = _int(_obj(usage.get("prompt_tokens_details"), "usage.prompt_tokens_details").get("cached_tokens"))
        reasoning = _int(
            _obj(usage.get("completion_tokens_details"), "usage.completion_tokens_details").get("reasoning_tokens")
        )
        return {
            "input_tokens": max(0, _int(usage.get("prompt_tokens")) - cached),
            "cached_input_tokens": cached,
            "cache_write_tokens": 0,
            "output_tokens": max(0, _int(usage.get("completion_tokens")) - reasoning),
            "reasoning_tokens": reasoning,
        }
    if "input_tokens" in usage or "output_tokens" in usage:  # OpenAI Responses API
        cached = _int(_obj(usage.get("input_tokens_details"), "usage.input_tokens_details").get("cached_tokens"))
        reasoning = _int(
            _obj(usage.get("output_tokens_details"), "usage.output_tokens_details").get("reasoning_tokens")
        )
        return {
            "input_tokens": max(0, _int(usage.get("input_tokens")) - cached),
            "cached_input_tokens": cached,
            "cache_write_tokens": 0,
            "output_tokens": max(0, _int(usage.get("output_tokens")) - reasoning),
            "reasoning_tokens": reasoning,
        }
    raise RowError("usage", "has no token counts this importer knows (OpenAI, Anthropic or Gemini usage)")


def _estimate_tokens(text: str) -> int:
    return max(1, -(-len(text) // 4))  # ~4 characters per token; only an estimate, and said so in the docs


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content)
    return "" if content is None else json.dumps(content, sort_keys=True)


def _request_fields(request: dict[str, Any]) -> dict[str, Any]:
    """Hashes and limits from the request half of a log pair (messages are hashed, never stored)."""
    out: dict[str, Any] = {}
    messages = request.get("messages") or request.get("input") or request.get("contents")
    system = request.get("system") or request.get("instructions")
    if (
        system is None
        and isinstance(messages, list)
        and messages
        and isinstance(messages[0], dict)
        and messages[0].get("role") in ("system", "developer")
    ):
        system = messages[0].get("content")
    if system:
        text = _content_text(system)
        out["prefix_hash"] = "system:" + short_hash(text)
        out["prefix_tokens"] = _estimate_tokens(text)
    if messages is not None:
        params = {k: v for k, v in request.items() if k not in ("user", "metadata", "stream", "stream_options")}
        out["request_hash"] = "request:" + short_hash(json.dumps(params, sort_keys=True, default=str))
    limit = request.get("max_completion_tokens") or request.get("max_tokens") or request.get("max_output_tokens")
    if limit:
        out["max_tokens"] = limit
    if request.get("user"):
        out["end_user"] = request["user"]
    metadata = request.get("metadata")
    if isinstance(metadata, dict):
        out["feature"] = metadata.get("feature") or metadata.get("tag")
        out["end_user"] = out.get("end_user") or metadata.get("end_user") or metadata.get("user_id")
    return out


_PROVIDER_BY_OBJECT = {"chat.completion": "openai", "response": "openai", "message": "anthropic"}


def _openai(item: dict[str, Any]) -> dict[str, Any]:
    request = item.get("request") if isinstance(item.get("request"), dict) else {}
    response = item.get("response", item)
    interactive = item.get("interactive")
    status = item.get("status")
    if isinstance(response, dict) and "body" in response and "custom_id" in item:  # Batch API output line
        interactive = False if interactive is None else interactive
        status = status or response.get("status_code")
        request_id = response.get("request_id") or item.get("custom_id")
        response = response.get("body") or {}
    else:
        request_id = None
    if not isinstance(response, dict):
        raise RowError("response", "must be a JSON object")
    if item.get("error") or response.get("error"):
        status = "error"
    usage = response.get("usage") or response.get("usageMetadata") or item.get("usage") or item.get("usageMetadata")
    if not isinstance(usage, dict):
        raise RowError("usage", "is missing (expected a provider usage object)")
    created = response.get("created") or response.get("created_at") or item.get("created")
    provider = item.get("provider") or _PROVIDER_BY_OBJECT.get(str(response.get("object") or response.get("type")))
    if "usageMetadata" in response or "usageMetadata" in item:
        provider = provider or "google"
    data: dict[str, Any] = {
        "request_id": item.get("request_id") or request_id or response.get("id") or response.get("responseId"),
        "timestamp": item.get("timestamp") or created,
        "provider": provider,
        "model": response.get("model") or response.get("modelVersion") or request.get("model") or item.get("model"),
        **split_usage(usage),
        "latency_ms": item.get("latency_ms") or item.get("duration_ms"),
        "status": status,
        "interactive": interactive,
    }
    data.update({k: v for k, v in _request_fields(request).items() if v is not None})
    for key in ("feature", "end_user", "prefix_hash", "prefix_tokens", "request_hash", "max_tokens"):
        if item.get(key) is not None:
            data[key] = item[key]
    return data


CONVERTERS = {"netra": _netra, "litellm": _litellm, "openai": _openai}
