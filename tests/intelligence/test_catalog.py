"""Invariants of the price catalog (genai-prices + shared/pricing/overlay.json) and of its cost arithmetic."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest

from functions.agent.pipeline_api import TokenUsage
from functions.agent.settings import LLMSection, parse_model_chain
from shared.config import REPO_ROOT
from shared.pricing import TIERS, UnknownModel, cost_usd, get_price, known_models, resolve_model, source

REAL = [m for m in known_models() if get_price(m).provider != "mock"]


def test_catalog_size_and_coverage() -> None:
    providers = {get_price(m).provider for m in REAL}
    assert len(REAL) >= 25
    assert {"openai", "anthropic", "google"} <= providers
    assert sum(1 for m in REAL if get_price(m).open_weights) >= 3
    for provider in ("openai", "anthropic", "google"):
        assert sum(1 for m in REAL if get_price(m).provider == provider) >= 5, provider


@pytest.mark.parametrize("model", known_models())
def test_entry_invariants(model: str) -> None:
    price = get_price(model)
    base = price.base
    assert price.tier in TIERS
    assert base.input > 0 and base.output > 0 and base.reasoning > 0
    assert base.output >= base.input, "output tokens are never cheaper than input tokens"
    if base.cached_input is not None:
        assert base.cached_input < base.input, "a cache read is cheaper than uncached input"
        assert price.min_cacheable_tokens and price.min_cacheable_tokens > 0
        assert price.cache_mode in ("automatic", "explicit")
    else:
        assert price.cache_mode == "none"
    if base.cache_write:
        assert all(v >= base.input for v in base.cache_write.values()), "cache writes cost at least input"
        assert base.cache_write.get("1h", base.cache_write["5m"]) >= base.cache_write["5m"]
    if price.batch is not None:
        assert price.batch_discount is not None and 0 < price.batch_discount < 1
        assert price.batch.input == base.input * price.batch_discount
        assert price.batch.output == base.output * price.batch_discount
    else:
        assert not price.batch_stacks_with_cache
    for tier in price.long_context:
        assert tier.above_input_tokens <= price.context_window
        assert tier.rates.input > base.input and tier.rates.output >= base.output, "tiers sit above their base"
        if base.cached_input is not None and tier.rates.cached_input is not None:
            assert tier.rates.cached_input > base.cached_input
    assert 0 < price.max_output_tokens <= price.context_window
    assert price.source_url.startswith("https://")
    assert date.fromisoformat(price.date_read) >= date(2025, 1, 1)


def test_overlay_names_are_unique() -> None:
    entries = source.overlay()
    names = [n.lower() for e in entries for n in (e["model"], *e.get("aliases", []))]
    assert len(names) == len(set(names)), "a name or alias appears twice"


def test_every_default_and_mock_model_is_priced() -> None:
    """The agent's default model chain, the mock provider's models and the documented examples are priced."""
    default = LLMSection.model_fields["llm_models"].default
    for _, model in parse_model_chain(default):
        get_price(model)
    example = re.search(r"e\.g\. (\S+)", LLMSection.model_fields["llm_models"].description or "").group(1)
    for _, model in parse_model_chain(example):
        get_price(model)
    assert get_price("mock-pro").tier == "premium" and get_price("mock-flash").tier == "standard"
    assert get_price("mock-pro").base.input > get_price("mock-flash").base.input


def test_names_from_logs_resolve() -> None:
    assert resolve_model("gpt-4o-2024-08-06") == "gpt-4o"
    assert resolve_model("openai/gpt-4o-mini") == "gpt-4o-mini"
    assert resolve_model("claude-sonnet-4-5-20250929") == "claude-sonnet-4-5"
    assert resolve_model("anthropic.claude-haiku-4-5-20251001-v1:0") == "claude-haiku-4-5"
    assert resolve_model("models/gemini-2.5-flash") == "gemini-2.5-flash"
    assert resolve_model("GPT-5") == "gpt-5"
    assert resolve_model("my-finetune") is None
    with pytest.raises(UnknownModel, match="not in the price catalog"):
        get_price("my-finetune")


def test_cost_arithmetic() -> None:
    # gpt-4o: 1,000 uncached x 2.50 + 2,000 cached x 1.25 + 500 output x 10 = 0.0025 + 0.0025 + 0.005
    assert cost_usd("gpt-4o", TokenUsage(1000, 2000, 0, 500, 0)) == Decimal("0.01")
    # sonnet 4.5 above 200k prompt tokens: the whole request at 6 / 22.50
    assert cost_usd("claude-sonnet-4-5", TokenUsage(250_000, 0, 0, 1000, 0)) == Decimal("1.5225")
    # sonnet batch stacks with caching: writes 1,000 x 3.75 x 0.5, reads 1,000 x 0.30 x 0.5
    assert cost_usd("claude-sonnet-4-5", TokenUsage(1000, 1000, 1000, 1000, 0), batch=True) == Decimal("0.011025")
    # gpt-4.1 batch does not stack: cached tokens at the batch input rate (1.00)
    assert cost_usd("gpt-4.1", TokenUsage(0, 1_000_000, 0, 0, 0), batch=True) == Decimal("1")
    # reasoning tokens are billed at the reasoning (output) rate on top of the visible output
    assert cost_usd("o3", TokenUsage(0, 0, 0, 1000, 1000)) == Decimal("0.016")
    with pytest.raises(ValueError, match="no batch tier"):
        cost_usd("llama-3.1-8b-instant", TokenUsage(1, 0, 0, 1, 0), batch=True)


def test_models_the_deployments_use_are_priced() -> None:
    """The LLM_MODELS chains Terraform deploys (variable defaults and the tfvars examples) are priced too."""
    chains = []
    for path in sorted((REPO_ROOT / "terraform").rglob("*")):
        if path.suffix == ".tf" or path.name.endswith(".tfvars.example"):
            chains += re.findall(r'(?:llm_models\s*=|default\s*=)\s*"((?:\w+:[\w.\-]+,?)+)"', path.read_text())
    assert chains, "no llm_models chain found in terraform/"
    for chain in chains:
        for _, model in parse_model_chain(chain):
            get_price(model)


def test_the_catalog_says_where_its_prices_come_from() -> None:
    """Every price names the package's source page and the date of the price data in use."""
    snapshot = source.current_snapshot()
    assert (snapshot.package, snapshot.refreshed) == ("genai-prices", False)
    for model in known_models():
        price = get_price(model)
        assert price.source_url.startswith("https://") and price.date_read == snapshot.data_date
