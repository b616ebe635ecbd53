"""The overlay against genai-prices, and our cost arithmetic against the package's own.

The overlay (shared/pricing/overlay.json) may only add what the package lacks; these tests fail when it names a
model the package does not have or states something the package says otherwise.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import genai_prices
import pytest
from genai_prices import data_snapshot

from functions.agent.pipeline_api import TokenUsage
from shared.pricing import cost_usd, get_price, known_models, price_periods, source

ENTRIES = {e["model"]: e for e in source.overlay()}


def package_entry(model: str):  # noqa: ANN201 - genai-prices' own types
    entry = ENTRIES[model]["package"]
    return source.package_model(data_snapshot.get_snapshot(), entry["provider"], entry["model"])


@pytest.mark.parametrize("model", sorted(ENTRIES))
def test_every_overlay_model_exists_in_the_package(model: str) -> None:
    provider, info = package_entry(model)
    assert info.id == ENTRIES[model]["package"]["model"] and provider.models


@pytest.mark.parametrize("model", sorted(ENTRIES))
def test_no_overlay_field_contradicts_the_package(model: str) -> None:
    entry = ENTRIES[model]
    _, info = package_entry(model)
    prices = source.prices_on(info, datetime.now(UTC).date())  # the price in force today
    variant = source.batch_variant(info)
    has_cache = prices.__dict__.get("cache_read_mtok") is not None
    # Fields the package has must not be restated.
    assert "context_window" not in entry or not info.context_window, "the package has a context window"
    assert "batch_discount" not in entry or variant is None, "the package has batch prices"
    if "batch_stacks_with_cache" in entry:
        assert variant is None or variant.__dict__.get("cache_read_mtok") is None, "the package says"
    # Fields the package lacks must agree with what it has.
    if entry.get("max_input_tokens"):
        assert entry["max_input_tokens"] <= (info.context_window or entry.get("context_window"))
    if info.deprecated:
        assert entry.get("legacy"), "deprecated in the package: never a recommended target"
    assert (entry.get("cache_mode", "none") != "none") == has_cache, "caching where the package has a cache price"
    if entry.get("min_cacheable_tokens"):
        assert has_cache
    assert get_price(model).base.input == source.base_and_tiers(prices.__dict__["input_mtok"])[0]


USAGES = [
    TokenUsage(input_tokens=12_000, cached_input_tokens=0, cache_write_tokens=0, output_tokens=800, reasoning_tokens=0),
    TokenUsage(input_tokens=3_000, cached_input_tokens=20_000, cache_write_tokens=0, output_tokens=500),
    TokenUsage(input_tokens=250_000, cached_input_tokens=0, cache_write_tokens=0, output_tokens=1_000),
]


@pytest.mark.parametrize("model", [m for m in known_models() if get_price(m).provider != "mock"])
def test_our_cost_equals_the_package_cost(model: str) -> None:
    """cost_usd (and the SQL pricing, equal to it to the digit: test_reference) agrees with calc_price for
    uncached input, cache reads, output and long-context tiers, on the day of the call."""
    _, info = package_entry(model)
    provider = ENTRIES[model]["package"]["provider"]
    for price in price_periods(model):
        day = price.since or date(2025, 3, 1)
        when = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        for usage in USAGES:
            if usage.input_tokens + usage.cached_input_tokens > price.input_limit:
                continue
            if usage.cached_input_tokens and price.base.cached_input is None:
                continue
            theirs = genai_prices.calc_price(
                genai_prices.Usage(
                    input_tokens=usage.input_tokens + usage.cached_input_tokens,
                    cache_read_tokens=usage.cached_input_tokens,
                    output_tokens=usage.output_tokens,
                ),
                info.id,
                provider_id=provider,
                genai_request_timestamp=when,
            ).total_price
            assert cost_usd(model, usage, day=day) == theirs, (model, day, usage)


def test_a_call_is_priced_at_the_price_in_force_on_its_day() -> None:
    """o3 cost 10 / 40 per million until 2025-06-09 and 2 / 8 from 2025-06-10 (genai-prices)."""
    usage = TokenUsage(input_tokens=1_000_000, cached_input_tokens=0, cache_write_tokens=0, output_tokens=0)
    assert cost_usd("o3", usage, day=date(2025, 6, 9)) == Decimal(10)
    assert cost_usd("o3", usage, day=date(2025, 6, 10)) == Decimal(2)
    assert [(p.since, p.until) for p in price_periods("o3")] == [(None, date(2025, 6, 10)), (date(2025, 6, 10), None)]


def test_mock_models_are_priced_offline_from_the_bundled_data() -> None:
    assert source.current_snapshot().refreshed is False
    assert get_price("mock-pro").base == get_price("gemini-2.5-pro").base
    assert get_price("mock-flash").base == get_price("gemini-2.5-flash").base
