"""The price catalog: list prices of LLM models (``catalog.json`` beside this file) and exact cost arithmetic.

Prices are per 1,000,000 tokens, held as ``Decimal`` so that costs add up to the cent. A usage object is
anything with the five token attributes of ``functions.agent.pipeline_api.TokenUsage`` (shared/ must not
import functions/): ``input_tokens`` (uncached input), ``cached_input_tokens`` (cache reads),
``cache_write_tokens``, ``output_tokens`` (visible output, reasoning excluded) and ``reasoning_tokens``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Protocol

CATALOG_PATH = Path(__file__).with_name("catalog.json")
MTOK = Decimal(1_000_000)
TIERS = ("economy", "standard", "premium", "frontier")
DEFAULT_CACHE_TTL = "5m"


class UsageLike(Protocol):
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int


class UnknownModel(KeyError):
    """The catalog has no price for this model name (after normalisation)."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.model = model

    def __str__(self) -> str:
        return f"model {self.model!r} is not in the price catalog"


@dataclass(frozen=True)
class Rates:
    """One set of per-million-token rates (the base tier, a long-context tier, or the batch tier)."""

    input: Decimal
    cached_input: Decimal | None  # None: the model has no cache-read price (no caching)
    cache_write: dict[str, Decimal] | None  # by TTL; None: writes are billed as plain input
    output: Decimal
    reasoning: Decimal

    def cache_write_rate(self, ttl: str = DEFAULT_CACHE_TTL) -> Decimal:
        if not self.cache_write:
            return self.input
        return self.cache_write.get(ttl) or self.cache_write[min(self.cache_write)]


@dataclass(frozen=True)
class LongContextTier:
    above_input_tokens: int  # the tier applies to a whole request whose prompt is larger than this
    rates: Rates


@dataclass(frozen=True)
class Price:
    model: str
    provider: str
    host: str
    tier: str
    open_weights: bool
    legacy: bool  # superseded by a newer model of the same provider; never recommended as a target
    aliases: tuple[str, ...]
    base: Rates
    batch: Rates | None  # None: no batch tier
    batch_discount: Decimal | None
    batch_stacks_with_cache: bool  # False: batch requests get no cache-read discount
    long_context: tuple[LongContextTier, ...]
    context_window: int
    max_output_tokens: int
    min_cacheable_tokens: int | None
    cache_mode: str  # automatic | explicit | none
    cache_storage_per_mtok_hour: Decimal | None
    source_url: str
    date_read: str
    notes: str

    @property
    def tier_rank(self) -> int:
        return TIERS.index(self.tier)

    def rates_for(self, prompt_tokens: int) -> Rates:
        """The rates of a request whose prompt (uncached + cached + written input) has this many tokens."""
        chosen = self.base
        for tier in sorted(self.long_context, key=lambda t: t.above_input_tokens):
            if prompt_tokens > tier.above_input_tokens:
                chosen = tier.rates
        return chosen


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _rates(raw: dict[str, Any], fallback_reasoning: Decimal | None = None) -> Rates:
    output = Decimal(str(raw["output_per_mtok"]))
    writes = raw.get("cache_write_per_mtok")
    return Rates(
        input=Decimal(str(raw["input_per_mtok"])),
        cached_input=_dec(raw.get("cached_input_per_mtok")),
        cache_write={k: Decimal(str(v)) for k, v in writes.items()} if writes else None,
        output=output,
        reasoning=_dec(raw.get("reasoning_per_mtok")) or fallback_reasoning or output,
    )


def _price(raw: dict[str, Any]) -> Price:
    base = _rates(raw)
    batch_raw = raw.get("batch")
    batch = None
    if batch_raw:
        batch = _rates({**batch_raw, "cache_write_per_mtok": None})
        # Batch reasoning is billed like batch output.
        batch = Rates(batch.input, batch.cached_input, None, batch.output, batch.output)
    return Price(
        model=raw["model"],
        provider=raw["provider"],
        host=raw["host"],
        tier=raw["tier"],
        open_weights=bool(raw.get("open_weights")),
        legacy=bool(raw.get("legacy")),
        aliases=tuple(raw.get("aliases") or ()),
        base=base,
        batch=batch,
        batch_discount=_dec(raw.get("batch_discount")),
        batch_stacks_with_cache=bool(raw.get("batch_stacks_with_cache")),
        long_context=tuple(
            LongContextTier(int(t["above_input_tokens"]), _rates(t)) for t in raw.get("long_context") or ()
        ),
        context_window=int(raw["context_window"]),
        max_output_tokens=int(raw["max_output_tokens"]),
        min_cacheable_tokens=raw.get("min_cacheable_tokens"),
        cache_mode=raw.get("cache_mode") or "none",
        cache_storage_per_mtok_hour=_dec(raw.get("cache_storage_per_mtok_hour")),
        source_url=raw["source_url"],
        date_read=raw["date_read"],
        notes=raw.get("notes", ""),
    )


@cache
def catalog() -> dict[str, Any]:
    """The raw catalog document (read once per process)."""
    with CATALOG_PATH.open(encoding="utf-8") as f:
        return json.load(f)


@cache
def _index() -> tuple[dict[str, Price], dict[str, str]]:
    prices: dict[str, Price] = {}
    names: dict[str, str] = {}
    for raw in catalog()["models"]:
        price = _price(raw)
        prices[price.model] = price
        for name in (price.model, *price.aliases):
            names[name.lower()] = price.model
    return prices, names


# Provider prefixes seen in exports (LiteLLM "openai/gpt-4o", Vertex "models/gemini-2.5-flash", Bedrock ids).
_PREFIX = re.compile(
    r"^(?:models/|publishers/google/models/|openai/|anthropic/|gemini/|vertex_ai/|google/|"
    r"groq/|together_ai/|together/|deepseek/|mistral/|bedrock/|anthropic\.)",
    re.IGNORECASE,
)
# Dated snapshots: gpt-4o-2024-08-06, claude-sonnet-4-5-20250929, gemini-2.0-flash-001, "@20250929", "-v1:0".
_SNAPSHOT = re.compile(r"(?:-\d{4}-\d{2}-\d{2}|[-@]\d{8}|-\d{3}|-v\d+:\d+|-latest|-preview-\d{2}-\d{4})$")


def resolve_model(name: str) -> str | None:
    """The catalog id for a model name as it appears in logs, or None if the catalog does not know it."""
    _, names = _index()
    candidate = name.strip().lower()
    for _ in range(3):
        if candidate in names:
            return names[candidate]
        stripped = _SNAPSHOT.sub("", _PREFIX.sub("", candidate))
        if stripped == candidate:
            break
        candidate = stripped
    return names.get(candidate)


def get_price(model: str) -> Price:
    """The price entry of a model (exact id, alias, or a provider-prefixed / dated snapshot name)."""
    resolved = resolve_model(model)
    if resolved is None:
        raise UnknownModel(model)
    return _index()[0][resolved]


def known_models() -> list[str]:
    """Every catalog model id, in catalog order."""
    return list(_index()[0])


def prompt_tokens(usage: UsageLike) -> int:
    return int(usage.input_tokens) + int(usage.cached_input_tokens) + int(usage.cache_write_tokens)


def cost_usd(model: str, usage: UsageLike, *, batch: bool = False, cache_ttl: str = DEFAULT_CACHE_TTL) -> Decimal:
    """Exact list-price cost of one call (unrounded Decimal).

    The long-context tier is chosen from the prompt size. With ``batch=True`` the batch rates apply; where the
    provider does not stack batch and caching discounts, cache reads are billed at the batch input rate.
    """
    price = get_price(model)
    rates = price.rates_for(prompt_tokens(usage))
    if batch:
        if price.batch is None:
            raise ValueError(f"model {price.model!r} has no batch tier")
        scale = price.batch_discount or Decimal(1)
        stacks = price.batch_stacks_with_cache and rates.cached_input is not None
        cached = rates.cached_input * scale if stacks else rates.input * scale
        writes = {k: v * scale for k, v in rates.cache_write.items()} if stacks and rates.cache_write else None
        rates = Rates(rates.input * scale, cached, writes, rates.output * scale, rates.reasoning * scale)
    cached_rate = rates.cached_input if rates.cached_input is not None else rates.input
    total = (
        Decimal(int(usage.input_tokens)) * rates.input
        + Decimal(int(usage.cached_input_tokens)) * cached_rate
        + Decimal(int(usage.cache_write_tokens)) * rates.cache_write_rate(cache_ttl)
        + Decimal(int(usage.output_tokens)) * rates.output
        + Decimal(int(usage.reasoning_tokens)) * rates.reasoning
    )
    return total / MTOK


__all__ = [
    "CATALOG_PATH",
    "TIERS",
    "LongContextTier",
    "Price",
    "Rates",
    "UnknownModel",
    "UsageLike",
    "catalog",
    "cost_usd",
    "get_price",
    "known_models",
    "prompt_tokens",
    "resolve_model",
]
