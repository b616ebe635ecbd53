"""List prices from the ``genai-prices`` package, completed by the project's overlay (``overlay.json``).

The package (Pydantic's genai-prices) holds exact Decimal prices per provider and model: uncached input, cache
read and write (5 min and 1 h), output, long-context tiers (``TieredPrices``: the whole request at the tier's
price when its prompt is above the tier's start), a ``processing=batch`` price variant, and prices with start
dates (``ConditionalPrice`` with ``StartDateConstraint``). The overlay keeps only what the package lacks and the
platform needs: capability tier, legacy flag, aliases, output limit, minimum cacheable prefix, cache mode,
input limit where it is below the context window, the context window where the package has none, and the batch
discount and batch/caching stacking where the package does not say (no batch variant, or a variant without a
cache-read price). tests/intelligence/test_price_source.py checks that every overlay model exists in the
package and that no overlay field contradicts it.

Periods: a model has one price per period between the start dates of its conditional prices; a call is priced
at the price in force on its UTC day. Time-of-day prices (DeepSeek's off-peak hours) are not modelled: the
price in force at 12:00 UTC (standard hours) applies all day.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genai_prices import data_snapshot
    from genai_prices import types as gp


def _ds() -> Any:
    # Imported on first use, not with shared.pricing: loading genai-prices takes about a second, which the
    # agent pays in a background startup component (functions/agent/components.py), not in its cold start.
    from genai_prices import data_snapshot

    return data_snapshot


def _gp() -> Any:
    from genai_prices import types

    return types


OVERLAY_PATH = Path(__file__).with_name("overlay.json")
BATCH_WHEN = {"processing": "batch"}
NOON = time(12, 0, tzinfo=UTC)
_DATE_IN_TEXT = re.compile(r"\b(20\d\d-\d\d-\d\d)\b")


@cache
def overlay() -> list[dict[str, Any]]:
    with OVERLAY_PATH.open(encoding="utf-8") as f:
        return json.load(f)["models"]


def snapshot() -> data_snapshot.DataSnapshot:
    """The price data in use: the package's bundled data, or newer data fetched by the operator refresh."""
    return _ds().get_snapshot()


def package_model(
    snap: data_snapshot.DataSnapshot, provider_id: str, model_id: str
) -> tuple[gp.Provider, gp.ModelInfo]:
    """The package's provider and model entry with exactly this id (no fuzzy matching for the overlay)."""
    provider = _ds().find_provider_by_id(snap.providers, provider_id)
    if provider is None:
        raise LookupError(f"genai-prices has no provider {provider_id!r}")
    for model in provider.models:
        if model.id == model_id:
            return provider, model
    raise LookupError(f"genai-prices has no model {model_id!r} for {provider_id!r}")


def start_dates(model: gp.ModelInfo) -> list[date]:
    """The start dates of a model's dated prices (its price periods begin on them)."""
    if isinstance(model.prices, _gp().ModelPrice):
        return []
    return sorted(
        {c.constraint.start_date for c in model.prices if isinstance(c.constraint, _gp().StartDateConstraint)}
    )


def prices_on(model: gp.ModelInfo, day: date | None) -> gp.ModelPrice:
    """The model's standard prices in force on ``day`` (the earliest period when None), at noon UTC."""
    when = datetime.combine(day or date(2000, 1, 1), NOON)
    return model.get_prices(when)


def batch_variant(model: gp.ModelInfo) -> gp.ModelPrice | None:
    """The package's batch prices of a model (whatever their start date: batch is priced as a change to make)."""
    for variant in model.price_variants or ():
        if variant.when == BATCH_WHEN:
            return variant.prices
    return None


def base_and_tiers(value: Decimal | gp.TieredPrices | None) -> tuple[Decimal | None, dict[int, Decimal]]:
    if value is None:
        return None, {}
    if isinstance(value, _gp().TieredPrices):
        return value.base, {t.start: t.price for t in value.tiers}
    return value, {}


def data_date(snap: data_snapshot.DataSnapshot) -> str:
    """The date of the price data: when it was fetched for refreshed data; for the bundled data the latest date
    it states that is not in the future (price start dates and "checked on" notes; announced future prices are
    skipped), as the package carries no release date of its own."""
    if snap.from_auto_update:
        return snap.timestamp.date().isoformat()
    return _bundled_data_date()


@cache
def _bundled_data_date() -> str:
    today = datetime.now(UTC).date().isoformat()
    latest = ""
    for provider in _ds()._bundled_snapshot().providers:  # noqa: SLF001 - the package's own data
        texts = [provider.price_comments or ""]
        for model in provider.models:
            texts.append(model.price_comments or "")
            latest = _max_past(latest, [d.isoformat() for d in start_dates(model)], today)
            for variant in model.price_variants or ():
                if isinstance(variant.constraint, _gp().StartDateConstraint):
                    latest = _max_past(latest, [variant.constraint.start_date.isoformat()], today)
        for text in texts:
            latest = _max_past(latest, _DATE_IN_TEXT.findall(text), today)
    return latest


def _max_past(latest: str, candidates: list[str], today: str) -> str:
    return max([latest, *(c for c in candidates if c <= today)])


@dataclass(frozen=True)
class Snapshot:
    """Which price data priced a report: package version, data date, and whether it was fetched at run time."""

    package: str
    version: str
    data_date: str
    refreshed: bool

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.package,
            "version": self.version,
            "data_date": self.data_date,
            "refreshed": self.refreshed,
        }


def describe_snapshot(snap: data_snapshot.DataSnapshot) -> Snapshot:
    return Snapshot("genai-prices", version("genai-prices"), data_date(snap), bool(snap.from_auto_update))


def bundled_snapshot() -> data_snapshot.DataSnapshot:
    return _ds()._bundled_snapshot()  # noqa: SLF001 - the data shipped with the installed package


def current_snapshot() -> Snapshot:
    """The price data in use (shared.pricing.snapshot_in_use: refreshed data that could not be used is not)."""
    from shared.pricing import snapshot_in_use

    return snapshot_in_use()
