"""Triage: the user's intent, the entities in the message, and whether their data suffices for it.

The model is asked for a small JSON object; when it fails, times out or answers anything else, a keyword
classifier decides (and the mock provider never answers JSON, so offline runs always use the keywords).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.pricing import known_models, resolve_model

INTENTS = (
    "full_analysis",
    "cost_breakdown",
    "caching",
    "batch",
    "model_choice",
    "latency",
    "what_if",
    "pricing",
    "data_upload",
    "generate_data",
    "off_topic",
    "ambiguous",
)
DATA_INTENTS = ("full_analysis", "cost_breakdown", "caching", "batch", "model_choice", "latency", "what_if")
PROFILES = ("support_chatbot", "rag_search", "batch_document_processing", "coding_assistant")

# Fields each analysis needs beyond the required ones, with what they unlock (data helper wording).
NEEDS: dict[str, dict[str, str]] = {
    "caching": {
        "prefix_hash": "which requests share a prompt prefix (system prompt or template)",
        "prefix_tokens": "how long that shared prefix is, in tokens",
        "request_hash": "which requests are exact repeats (hash of model + messages + parameters)",
    },
    "batch": {"interactive": "whether someone waited for the answer (false = background work)"},
    "latency": {"latency_ms": "how long each call took, in milliseconds"},
}

_KEYWORDS: dict[str, tuple[str, ...]] = {
    "generate_data": (
        "sample data",
        "demo data",
        "synthetic",
        "generate data",
        "fake data",
        "example data",
        "try it without",
        "test data",
        "generate usage",
        "generate some",
    ),
    "data_upload": (
        "upload",
        "import",
        "csv",
        "jsonl",
        "file format",
        "which format",
        "what format",
        "send my data",
        "send you my",
        "export from",
        "litellm log",
        "spend log",
        "share my logs",
    ),
    "pricing": (
        "price of",
        "prices of",
        "pricing for",
        "per million",
        "per token",
        "cost per token",
        "how much does",
        "how much is",
        "cheapest model",
        "price list",
        "compare prices",
        "list price",
    ),
    "what_if": (
        "what if",
        "what-if",
        "grow",
        "growth",
        "projection",
        "forecast",
        "next quarter",
        "next year",
        "simulate",
        "scenario",
        "double",
        "triple",
    ),
    "latency": ("latency", "slow", "p95", "p99", "p50", "response time", "how fast", "percentile", "timeout"),
    "caching": ("cache", "caching", "cached", "duplicate", "repeated prompt", "same prompt", "prefix"),
    "batch": ("batch", "background", "offline", "nightly", "overnight", "async", "non-interactive"),
    "model_choice": (
        "cheaper model",
        "smaller model",
        "switch model",
        "switch to",
        "downgrade",
        "right-size",
        "rightsize",
        "right size",
        "which model",
        "model routing",
        "route",
        "overkill",
        "too expensive model",
        "mini",
        "nano",
        "haiku",
        "flash",
    ),
    "cost_breakdown": (
        "breakdown",
        "break down",
        "where is",
        "where does",
        "where's",
        "spend by",
        "cost by",
        "by feature",
        "by model",
        "by user",
        "by day",
        "per feature",
        "per model",
        "per user",
        "per day",
        "biggest cost",
        "top spend",
        "most expensive",
        "how much did",
        "how much do we",
        "what did we spend",
        "spending",
        "bill",
        "invoice",
    ),
    "full_analysis": (
        "optimi",
        "reduce",
        "save",
        "savings",
        "cut",
        "lower",
        "recommend",
        "report",
        "analy",
        "audit",
        "review my",
        "review our",
        "improve",
        "efficien",
        "waste",
        "full",
    ),
}
# Verbs that ask for savings outweigh the nouns of a narrower intent ("reduce my bill" is not a breakdown).
_STRONG = {"optimi": 2, "reduce": 2, "save": 2, "savings": 2, "cut": 2, "lower": 2, "recommend": 2}
# Words that place a message in our domain even when no intent keyword matches.
_DOMAIN = (
    "llm",
    "token",
    "model",
    "cost",
    "spend",
    "usage",
    "api",
    "openai",
    "anthropic",
    "gemini",
    "claude",
    "gpt",
    "prompt",
    "inference",
    "ai bill",
    "budget",
    "$",
    "dollar",
    "money",
)
_GREETING = re.compile(
    r"^\s*(hi|hello|hey|help( me| please)?|yo|good (morning|afternoon|evening)|thanks|thank you)"
    r"\b[\s!.?]*$",
    re.IGNORECASE,
)
_GENERATE_COMMAND = re.compile(r"^\s*/generate\b(.*)$", re.IGNORECASE | re.DOTALL)
_BY = {
    "feature": ("feature", "tag"),
    "end_user": ("user", "customer", "tenant"),
    "day": ("day", "daily", "date"),
    "model": ("model",),
    "provider": ("provider", "vendor"),
}


@dataclass
class Triage:
    intent: str
    source: str  # llm | keywords | command
    confidence: float
    entities: dict[str, Any] = field(default_factory=dict)
    fallback_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def entities(message: str) -> dict[str, Any]:
    """Models, growth, horizon, breakdown dimension and profile named in the message."""
    text = message.lower()
    found: dict[str, Any] = {}
    models = []
    for token in re.findall(r"[a-z0-9][a-z0-9._/:@-]*[a-z0-9]", text):
        model = resolve_model(token)
        if model and model not in models and not model.startswith("mock-"):
            models.append(model)
    if models:
        found["models"] = models
    growth = re.search(r"(\d+(?:\.\d+)?)\s*%\s*(?:per|a|each|/)?\s*(?:month|mo\b)", text) or re.search(
        r"gr[oe]w\w*\s+(?:by\s+)?(\d+(?:\.\d+)?)\s*%", text
    )
    if growth:
        found["growth_pct_per_month"] = float(growth.group(1))
    elif re.search(r"\bdoubl", text):
        found["growth_pct_per_month"] = 100.0
    months = re.search(r"(\d+)\s*months?", text)
    if months and 1 <= int(months.group(1)) <= 36:
        found["months"] = int(months.group(1))
    for dimension, words in _BY.items():
        if re.search(r"\b(?:by|per|each)\s+(?:" + "|".join(words) + r")", text):
            found["by"] = dimension
            break
    for profile in PROFILES:
        if profile in text or profile.replace("_", " ") in text or profile.split("_")[0] in text.split():
            found["profile"] = profile
            break
    return found


def parse_command(message: str) -> Triage | None:
    """``/generate [profile] [days=N] [seed=N]``: the chat command for synthetic usage."""
    match = _GENERATE_COMMAND.match(message)
    if not match:
        return None
    args = match.group(1).split()
    found: dict[str, Any] = {"profile": "support_chatbot"}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep and key in PROFILES:
            found["profile"] = key
        elif sep and key in ("days", "seed") and value.isdigit():
            found[key] = int(value)
        elif sep and key == "profile" and value in PROFILES:
            found["profile"] = value
    return Triage("generate_data", "command", 1.0, found)


def _has(text: str, word: str) -> bool:
    """``word`` at the start of a word of ``text`` ("optimi" matches "optimise", "cut" not "execute")."""
    prefix = r"\b" if word[0].isalnum() else ""
    return re.search(prefix + re.escape(word), text) is not None


def keyword_triage(message: str, reason: str | None = None) -> Triage:
    command = parse_command(message)
    if command:
        return command
    text = message.lower().strip()
    found = entities(message)
    if not text or _GREETING.match(text):
        return Triage("ambiguous", "keywords", 0.5, found, reason)
    scores = {
        intent: sum(_STRONG.get(word, 1) for word in words if _has(text, word)) for intent, words in _KEYWORDS.items()
    }
    best = max(scores.values())
    if best == 0:
        if any(_has(text, word) for word in _DOMAIN):
            # In our domain but no specific ask ("analyse my LLM usage"): the full analysis answers it.
            intent = "full_analysis" if len(text.split()) >= 3 else "ambiguous"
            return Triage(intent, "keywords", 0.4, found, reason)
        return Triage("off_topic", "keywords", 0.6, found, reason)
    # Ties go to the more specific intent: _KEYWORDS is ordered from specific to general.
    intent = next(i for i in _KEYWORDS if scores[i] == best)
    if intent == "pricing" and not found.get("models") and "cheapest" not in text and scores["full_analysis"]:
        intent = "full_analysis"
    return Triage(intent, "keywords", min(0.9, 0.5 + 0.1 * best), found, reason)


TRIAGE_PROMPT = (
    "Classify the user's message for an LLM cost optimization assistant. Answer with one JSON object only: "
    '{"intent": one of ' + ", ".join(INTENTS) + ', "models": [model names mentioned], '
    '"growth_pct_per_month": number or null, "months": number or null, "by": "model|feature|end_user|day|provider" '
    'or null, "profile": one of ' + ", ".join(PROFILES) + " or null}."
)


def parse_llm_answer(text: str, message: str) -> Triage:
    """A Triage from the model's JSON answer; ValueError when it is not usable."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("the answer holds no JSON object")
    try:
        data = json.loads(text[start : end + 1])
    except ValueError:
        raise ValueError("the answer is not valid JSON") from None
    intent = data.get("intent") if isinstance(data, dict) else None
    if intent not in INTENTS:
        raise ValueError(f"unknown intent {intent!r}")
    found = entities(message)  # the message's own entities are checked facts; the model's are suggestions
    models = [resolve_model(str(m)) for m in data.get("models") or [] if isinstance(m, str)]
    models = [m for m in models if m]
    if models:
        found["models"] = list(dict.fromkeys([*found.get("models", []), *models]))
    for key, kind in (("growth_pct_per_month", float), ("months", int)):
        value = data.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and key not in found:
            if key == "months" and not 1 <= value <= 36:
                continue
            if key == "growth_pct_per_month" and not -50 <= value <= 500:
                continue
            found[key] = kind(value)
    if data.get("by") in _BY and "by" not in found:
        found["by"] = data["by"]
    if data.get("profile") in PROFILES and "profile" not in found:
        found["profile"] = data["profile"]
    return Triage(intent, "llm", 0.8, found)


def sufficiency(intent: str, overview: dict[str, Any]) -> dict[str, Any]:
    """none (no records), partial (records, but fields this intent needs are missing) or sufficient; with the
    exact missing fields and what each would unlock."""
    if overview.get("records", 0) == 0:
        return {"level": "none", "missing": {}}
    coverage = overview.get("coverage_pct", {})
    wanted: dict[str, str] = {}
    if intent in ("full_analysis", *NEEDS):
        for area, fields in NEEDS.items():
            if intent in (area, "full_analysis"):
                wanted.update(fields)
    missing = {f: why for f, why in wanted.items() if not coverage.get(f)}
    if intent == "caching":
        # Either kind of caching analysis can run on its own: only both missing blocks the intent.
        blocked = {"prefix_hash", "request_hash"} <= set(missing) or {"prefix_tokens", "request_hash"} <= set(missing)
    else:
        blocked = intent in NEEDS and set(NEEDS[intent]) <= set(missing)
    level = "sufficient" if not missing else ("insufficient" if blocked else "partial")
    return {"level": level, "missing": missing}


def known_model_names() -> list[str]:
    return known_models()
