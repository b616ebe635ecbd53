"""The project's own usage schema: one validated row per LLM call, and the per-field rules that every input
format is mapped onto (formats.py). Errors name the row number, the field and the reason.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from shared.errors import NetraError
from shared.pricing import get_price, resolve_model

TOKEN_FIELDS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
MAX_TEXT = 200
# Epoch values above this are milliseconds (1e11 s is the year 5138).
_EPOCH_MS_ABOVE = 1e11
_EARLIEST = datetime(2015, 1, 1, tzinfo=UTC)

FIELD_DOCS: dict[str, str] = {
    "request_id": "unique id of the call (idempotency key: a row whose request_id is already stored is skipped)",
    "timestamp": "when the call started: ISO 8601 (2025-11-03T14:05:00Z) or epoch seconds / milliseconds",
    "provider": "openai, anthropic, google, ... (inferred from the model when the catalog knows it)",
    "model": "model name as billed, e.g. gpt-4o-mini or claude-sonnet-4-5-20250929",
    "input_tokens": "uncached input tokens (prompt tokens minus cache reads and cache writes)",
    "cached_input_tokens": "input tokens read from the provider's prompt cache (default 0)",
    "cache_write_tokens": "input tokens written to the prompt cache (default 0)",
    "output_tokens": "visible output tokens, reasoning excluded",
    "reasoning_tokens": "reasoning / thinking tokens (default 0)",
    "latency_ms": "end-to-end latency in milliseconds (optional)",
    "status": "ok or error (success/failure and HTTP codes are accepted; default ok)",
    "feature": "the product feature or tag that made the call (optional)",
    "end_user": "your end user's id (optional; hash it if it is personal data)",
    "prefix_hash": "hash of the shared prompt prefix (system prompt, template) (optional)",
    "prompt_template": "name of the prompt template; used as prefix_hash when that is absent (optional)",
    "prefix_tokens": "tokens in that shared prefix (optional; needed for the prompt caching analysis)",
    "request_hash": "hash of the whole request (model + messages + parameters) (optional; exact duplicates)",
    "max_tokens": "the max_tokens limit sent with the call (optional)",
    "interactive": "true if a person waited for the answer, false for background work (optional)",
}
REQUIRED = ("request_id", "timestamp", "model", "input_tokens", "output_tokens")


class RowError(NetraError, ValueError):
    """One problem of one row: which field and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass
class UsageRow:
    request_id: str
    ts: datetime
    provider: str
    model: str
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    latency_ms: int | None
    status: str
    feature: str | None
    end_user: str | None
    prefix_hash: str | None
    prefix_tokens: int | None
    request_hash: str | None
    max_tokens: int | None
    interactive: bool | None

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def parse_int(
    value: Any, field: str, *, required: bool = False, minimum: int = 0, maximum: int = 2_000_000_000
) -> int | None:
    if _blank(value):
        if required:
            raise RowError(field, "is required")
        return None
    if isinstance(value, bool):
        raise RowError(field, "must be a whole number, not a boolean")
    try:
        number = float(value) if isinstance(value, str) else value
        if isinstance(number, float):
            if not math.isfinite(number) or number != int(number):
                raise ValueError
            number = int(number)
        if not isinstance(number, int):
            raise ValueError
    except (TypeError, ValueError):
        raise RowError(field, f"must be a whole number, got {str(value)[:40]!r}") from None
    if number < minimum or number > maximum:
        raise RowError(field, f"must be between {minimum} and {maximum}")
    return number


def parse_text(value: Any, field: str, *, required: bool = False, limit: int = MAX_TEXT) -> str | None:
    if _blank(value):
        if required:
            raise RowError(field, "is required")
        return None
    text = str(value).strip()
    if len(text) > limit:
        raise RowError(field, f"must be at most {limit} characters")
    if "\x00" in text or not _encodable(text):
        # PostgreSQL stores neither a NUL nor an unpaired surrogate (SQLSTATE 22021 / 22P05).
        raise RowError(field, "must not contain NUL characters or unpaired surrogates")
    return text


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_bool(value: Any, field: str) -> bool | None:
    if _blank(value):
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "t", "1", "yes", "y"):
        return True
    if text in ("false", "f", "0", "no", "n"):
        return False
    raise RowError(field, f"must be true or false, got {str(value)[:40]!r}")


def parse_timestamp(value: Any, field: str = "timestamp") -> datetime:
    if _blank(value):
        raise RowError(field, "is required")
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            epoch = float(value)
            moment = datetime.fromtimestamp(epoch / 1000 if epoch > _EPOCH_MS_ABOVE else epoch, UTC)
        else:
            text = str(value).strip()
            if text.replace(".", "", 1).isdigit():
                return parse_timestamp(float(text), field)
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)  # logs without an offset are UTC by convention
    except (ValueError, OverflowError, OSError):
        raise RowError(field, f"must be ISO 8601 or epoch seconds, got {str(value)[:40]!r}") from None
    if moment < _EARLIEST or moment > datetime.now(UTC).replace(year=datetime.now(UTC).year + 1):
        raise RowError(field, "is outside the plausible range (2015 to next year)")
    return moment.astimezone(UTC)


def parse_status(value: Any) -> str:
    if _blank(value):
        return "ok"
    text = str(value).strip().lower()
    if text in ("ok", "success", "succeeded", "completed", "complete", "200", "true"):
        return "ok"
    if text.isdigit():
        return "ok" if 200 <= int(text) < 300 else "error"
    if text in ("error", "failure", "failed", "fail", "timeout", "cancelled", "false"):
        return "error"
    raise RowError("status", f"must be ok or error, got {str(value)[:40]!r}")


def short_hash(text: str) -> str:
    # surrogatepass: a log may carry an unpaired surrogate; it is hashed, never stored.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def build_row(raw: dict[str, Any]) -> UsageRow:
    """A validated row from a dict in the project's schema (formats.py maps other formats onto it).

    Raises RowError for the first problem found; ``collect_errors`` is used when all problems are wanted.
    """
    errors = collect_errors(raw)
    if errors:
        raise errors[0]
    return _build(raw)


def collect_errors(raw: dict[str, Any]) -> list[RowError]:
    errors: list[RowError] = []
    for check in _CHECKS:
        try:
            check(raw)
        except RowError as exc:
            errors.append(exc)
    return errors


def _check_model(raw: dict[str, Any]) -> None:
    model = parse_text(raw.get("model"), "model", required=True)
    provider = parse_text(raw.get("provider"), "provider")
    if provider is None and model is not None and resolve_model(model) is None:
        raise RowError("provider", f"is required for model {model!r}, which the price catalog does not know")


def _check_tokens(raw: dict[str, Any]) -> None:
    for name in TOKEN_FIELDS:
        parse_int(raw.get(name), name, required=name in REQUIRED)


def _check_prefix(raw: dict[str, Any]) -> None:
    tokens = parse_int(raw.get("prefix_tokens"), "prefix_tokens")
    has_prefix = not _blank(raw.get("prefix_hash")) or not _blank(raw.get("prompt_template"))
    if tokens is not None and not has_prefix:
        raise RowError("prefix_tokens", "needs prefix_hash or prompt_template (which prefix it measures)")


_CHECKS = (
    lambda r: parse_text(r.get("request_id"), "request_id", required=True),
    lambda r: parse_timestamp(r.get("timestamp")),
    _check_model,
    _check_tokens,
    lambda r: parse_int(r.get("latency_ms"), "latency_ms", maximum=86_400_000),
    lambda r: parse_status(r.get("status")),
    lambda r: parse_text(r.get("feature"), "feature"),
    lambda r: parse_text(r.get("end_user"), "end_user"),
    lambda r: parse_text(r.get("prefix_hash"), "prefix_hash"),
    lambda r: parse_text(r.get("prompt_template"), "prompt_template"),
    _check_prefix,
    lambda r: parse_text(r.get("request_hash"), "request_hash"),
    lambda r: parse_int(r.get("max_tokens"), "max_tokens", minimum=1),
    lambda r: parse_bool(r.get("interactive"), "interactive"),
)


def _build(raw: dict[str, Any]) -> UsageRow:
    model_raw = parse_text(raw.get("model"), "model", required=True) or ""
    # Store the catalog's id so that dated snapshots and prefixed names group and price together.
    model = resolve_model(model_raw) or model_raw
    provider = parse_text(raw.get("provider"), "provider")
    if provider is None:
        provider = get_price(model).provider
    prefix_hash = parse_text(raw.get("prefix_hash"), "prefix_hash")
    template = parse_text(raw.get("prompt_template"), "prompt_template")
    if prefix_hash is None and template is not None:
        prefix_hash = "template:" + short_hash(template)
    tokens = {name: parse_int(raw.get(name), name) or 0 for name in TOKEN_FIELDS}
    return UsageRow(
        request_id=parse_text(raw.get("request_id"), "request_id", required=True) or "",
        ts=parse_timestamp(raw.get("timestamp")),
        provider=provider.lower(),
        model=model,
        **tokens,
        latency_ms=parse_int(raw.get("latency_ms"), "latency_ms", maximum=86_400_000),
        status=parse_status(raw.get("status")),
        feature=parse_text(raw.get("feature"), "feature"),
        end_user=parse_text(raw.get("end_user"), "end_user"),
        prefix_hash=prefix_hash,
        prefix_tokens=parse_int(raw.get("prefix_tokens"), "prefix_tokens"),
        request_hash=parse_text(raw.get("request_hash"), "request_hash"),
        max_tokens=parse_int(raw.get("max_tokens"), "max_tokens", minimum=1),
        interactive=parse_bool(raw.get("interactive"), "interactive"),
    )
