"""The price catalog: list prices of LLM models and exact cost arithmetic.

List prices come from the ``genai-prices`` package; ``overlay.json`` beside this file adds what the package lacks
(capability tier, legacy flag, limits, minimum cacheable prefix, batch stacking where it does not say; see
source.py). Prices are per 1,000,000 tokens, held as ``Decimal`` so that costs add up to the cent. A model has
one ``Price`` per price period (``since`` .. ``until``); ``get_price(model, day)`` is the one in force on a day.
A usage object is anything with the five token attributes of ``functions.agent.pipeline_api.TokenUsage``
(shared/ must not import functions/): ``input_tokens`` (uncached input), ``cached_input_tokens`` (cache reads),
``cache_write_tokens``, ``output_tokens`` (visible output, reasoning excluded) and ``reasoning_tokens``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Protocol

from shared.errors import NetraError
from shared.pricing import source

log = logging.getLogger("shared.pricing")
MTOK = Decimal(1_000_000)
TIERS = ("economy", "standard", "premium", "frontier")
DEFAULT_CACHE_TTL = "5m"


class UsageLike(Protocol):
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int


class UnknownModel(NetraError, KeyError):
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
    date_read: str  # the date of the price data (source.data_date)
    notes: str
    since: date | None = None  # first day of this price period (None: since ever)
    until: date | None = None  # first day of the next period (None: still in force)
    max_input_tokens: int | None = None  # input limit below the context window (GPT-5: 272,000 of 400,000)

    @property
    def input_limit(self) -> int:
        """The largest prompt the model takes."""
        return min(self.context_window, self.max_input_tokens or self.context_window)

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


def _field(price: Any, key: str) -> Any:
    return price.__dict__.get(key)


def _build(entry: dict[str, Any], snap: Any, since: date | None, until: date | None) -> Price:
    """One price period of an overlay model, from the package's prices in force on ``since``."""
    provider, info = source.package_model(snap, entry["package"]["provider"], entry["package"]["model"])
    prices = source.prices_on(info, since)
    inp, in_t = source.base_and_tiers(_field(prices, "input_mtok"))
    read, read_t = source.base_and_tiers(_field(prices, "cache_read_mtok"))
    write, write_t = source.base_and_tiers(_field(prices, "cache_write_mtok"))
    write_1h, write_1h_t = source.base_and_tiers(_field(prices, "cache_write_1h_mtok"))
    out, out_t = source.base_and_tiers(_field(prices, "output_mtok"))
    if inp is None or out is None:
        raise ValueError(f"genai-prices has no token prices for {info.id!r}")

    def rates(tier: int | None) -> Rates:
        def at(base: Decimal | None, tiers: dict[int, Decimal]) -> Decimal | None:
            return tiers.get(tier, base) if tier is not None and base is not None else base

        o = at(out, out_t)
        w, w1 = at(write, write_t), at(write_1h, write_1h_t)
        writes = {k: v for k, v in (("5m", w), ("1h", w1)) if v is not None} or None
        return Rates(input=at(inp, in_t), cached_input=at(read, read_t), cache_write=writes, output=o, reasoning=o)

    base = rates(None)
    starts = sorted(set(in_t) | set(out_t))
    long_context = tuple(LongContextTier(start, rates(start)) for start in starts)
    variant = source.batch_variant(info)
    if variant is not None:
        # The variant's discount, measured against the standard price in force when the variant was recorded.
        variant_input = source.base_and_tiers(_field(variant, "input_mtok"))[0]
        reference = source.base_and_tiers(_field(source.prices_on(info, None), "input_mtok"))[0]
        for v in info.price_variants or ():
            if v.when == source.BATCH_WHEN and isinstance(v.constraint, source._gp().StartDateConstraint):
                reference = source.base_and_tiers(
                    _field(source.prices_on(info, v.constraint.start_date), "input_mtok")
                )[0]
        discount: Decimal | None = (variant_input / reference) if variant_input is not None and reference else None
        says_stacking = _field(variant, "cache_read_mtok") is not None
        stacks = True if says_stacking else bool(entry.get("batch_stacks_with_cache"))
    else:
        discount = Decimal(str(entry["batch_discount"])) if entry.get("batch_discount") else None
        stacks = bool(entry.get("batch_stacks_with_cache"))
    batch = None
    if discount is not None:
        cached = base.cached_input * discount if stacks and base.cached_input is not None else None
        batch = Rates(base.input * discount, cached, None, base.output * discount, base.output * discount)
    context = info.context_window or entry.get("context_window")
    if not context:
        raise ValueError(f"no context window for {entry['model']!r} (package or overlay)")
    return Price(
        model=entry["model"],
        provider=entry["provider"],
        host=entry.get("host", entry["provider"]),
        tier=entry["tier"],
        open_weights=bool(entry.get("open_weights")),
        legacy=bool(entry.get("legacy")),
        aliases=tuple(entry.get("aliases") or ()),
        base=base,
        batch=batch,
        batch_discount=discount,
        batch_stacks_with_cache=stacks,
        long_context=long_context,
        context_window=int(context),
        max_output_tokens=int(entry["max_output_tokens"]),
        min_cacheable_tokens=entry.get("min_cacheable_tokens"),
        cache_mode=entry.get("cache_mode") or "none",
        cache_storage_per_mtok_hour=(
            Decimal(str(entry["cache_storage_per_mtok_hour"])) if entry.get("cache_storage_per_mtok_hour") else None
        ),
        source_url=(provider.pricing_urls or [""])[0],
        date_read=source.data_date(snap),
        notes=entry.get("notes", ""),
        since=since,
        until=until,
        max_input_tokens=entry.get("max_input_tokens"),
    )


def _periods(entry: dict[str, Any], snap: Any) -> tuple[Price, ...]:
    _, info = source.package_model(snap, entry["package"]["provider"], entry["package"]["model"])
    starts: list[date | None] = [None, *source.start_dates(info)]
    ends: list[date | None] = [*starts[1:], None]
    return tuple(_build(entry, snap, since, until) for since, until in zip(starts, ends, strict=True))


_INDEX: tuple[Any, dict[str, tuple[Price, ...]], dict[str, str], Any] | None = None


def _build_index(snap: Any) -> tuple[dict[str, tuple[Price, ...]], dict[str, str]]:
    prices: dict[str, tuple[Price, ...]] = {}
    names: dict[str, str] = {}
    for entry in source.overlay():
        periods = _periods(entry, snap)
        prices[entry["model"]] = periods
        for name in (entry["model"], *periods[0].aliases):
            names[name.lower()] = entry["model"]
    return prices, names


def _index() -> tuple[dict[str, tuple[Price, ...]], dict[str, str]]:
    """Price periods by model id and names to ids, rebuilt when the price data changes (operator refresh).

    Refreshed data that lacks an overlay model (or its token prices) is not used: the bundled data keeps
    pricing, and the report says which data priced it (snapshot_in_use)."""
    global _INDEX
    snap = source.snapshot()
    if _INDEX is None or _INDEX[0] is not snap:
        used = snap
        try:
            prices, names = _build_index(snap)
        except (LookupError, ValueError) as exc:
            if not snap.from_auto_update:
                raise
            log.warning("refreshed price data not used: %s", exc)
            used = source.bundled_snapshot()
            prices, names = _build_index(used)
        _INDEX = (snap, prices, names, used)
    return _INDEX[1], _INDEX[2]


def snapshot_in_use() -> source.Snapshot:
    """The package version and data date of the prices in use."""
    _index()
    assert _INDEX is not None
    return source.describe_snapshot(_INDEX[3])


def data_version() -> int:
    """Changes when the price data changes (a cache key for anything derived from prices)."""
    _index()
    return id(_INDEX[0]) if _INDEX else 0


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
    names = _index()[1]
    candidate = name.strip().lower()
    for _ in range(3):
        if candidate in names:
            return names[candidate]
        stripped = _SNAPSHOT.sub("", _PREFIX.sub("", candidate))
        if stripped == candidate:
            break
        candidate = stripped
    return names.get(candidate)


def get_price(model: str, day: date | None = None) -> Price:
    """The price of a model (exact id, alias, or a provider-prefixed / dated snapshot name) in force on ``day``
    (UTC; today when None)."""
    resolved = resolve_model(model)
    if resolved is None:
        raise UnknownModel(model)
    periods = _index()[0][resolved]
    day = day or datetime.now(UTC).date()
    for price in reversed(periods):
        if price.since is None or price.since <= day:
            return price
    return periods[0]


def price_periods(model: str) -> tuple[Price, ...]:
    """Every price period of a model, oldest first."""
    resolved = resolve_model(model)
    if resolved is None:
        raise UnknownModel(model)
    return _index()[0][resolved]


def known_models() -> list[str]:
    """Every catalog model id, in catalog order."""
    return list(_index()[0])


def prompt_tokens(usage: UsageLike) -> int:
    return int(usage.input_tokens) + int(usage.cached_input_tokens) + int(usage.cache_write_tokens)


def cost_usd(
    model: str,
    usage: UsageLike,
    *,
    batch: bool = False,
    cache_ttl: str = DEFAULT_CACHE_TTL,
    day: date | None = None,
) -> Decimal:
    """Exact list-price cost of one call (unrounded Decimal) at the price in force on ``day`` (today if None).

    The long-context tier is chosen from the prompt size. With ``batch=True`` the batch rates apply; where the
    provider does not stack batch and caching discounts, cache reads are billed at the batch input rate.
    """
    price = get_price(model, day)
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
    "TIERS",
    "LongContextTier",
    "Price",
    "Rates",
    "UnknownModel",
    "UsageLike",
    "cost_usd",
    "data_version",
    "get_price",
    "known_models",
    "price_periods",
    "snapshot_in_use",
    "prompt_tokens",
    "resolve_model",
]
