"""The operator price refresh (PRICES_REFRESH): genai-prices' own updater fetching from a local HTTP server in
place of the project's published file (no network here). Off by default; on, it never blocks: prices are served
from the bundled data while a fetch hangs, a fetch the overlay cannot use changes nothing, and a good one is used
with its date in the report's snapshot.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from genai_prices import data_snapshot
from genai_prices import types as gp

from functions.agent.settings import AgentSection
from shared.pricing import get_price, refresh, snapshot_in_use, source


def _price_raw(price: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in price.__dict__.items():
        if value is None or key.startswith("_"):
            continue
        if isinstance(value, gp.TieredPrices):
            out[key] = {
                "base": str(value.base),
                "tiers": [{"start": t.start, "price": str(t.price)} for t in value.tiers],
            }
        else:
            out[key] = str(value)
    return out


def published_data(gpt_4o_input: str) -> list[dict[str, Any]]:
    """The overlay models in the package's published (v2 JSON) form, with gpt-4o's input price changed."""
    snap = source.bundled_snapshot()
    providers: dict[str, dict[str, Any]] = {}
    for entry in source.overlay():
        provider, info = source.package_model(snap, entry["package"]["provider"], entry["package"]["model"])
        if isinstance(info.prices, gp.ModelPrice):
            prices: Any = _price_raw(info.prices)
        else:
            prices = [
                {
                    **(
                        {"constraint": {"start_date": c.constraint.start_date.isoformat()}}
                        if isinstance(c.constraint, gp.StartDateConstraint)
                        else {}
                    ),
                    "prices": _price_raw(c.prices),
                }
                for c in info.prices
            ]
        if info.id == "gpt-4o":
            prices["input_mtok"] = gpt_4o_input
        model: dict[str, Any] = {"id": info.id, "match": {"equals": info.id}, "prices": prices}
        if info.context_window:
            model["context_window"] = info.context_window
        if info.deprecated:
            model["deprecated"] = True
        variant = source.batch_variant(info)
        if variant is not None:
            model["price_variants"] = [{"when": {"processing": "batch"}, "prices": _price_raw(variant)}]
        raw = providers.setdefault(
            provider.id,
            {"id": provider.id, "name": provider.name, "api_pattern": provider.api_pattern, "models": []},
        )
        raw["pricing_urls"] = provider.pricing_urls
        if all(m["id"] != info.id for m in raw["models"]):
            raw["models"].append(model)
    return list(providers.values())


class Server:
    """A local price-data server: ``body`` is served; with ``hold`` set, a request waits for ``release``."""

    def __init__(self) -> None:
        self.body = b"[]"
        self.hold = False
        self.entered = threading.Event()
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.entered.set()
                if server.hold:
                    server.release.wait(10)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *_: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.close()
        data_snapshot.set_custom_snapshot(None)  # back to the bundled data for the other tests


def test_refresh_is_off_by_default() -> None:
    assert AgentSection.model_fields["prices_refresh"].default is False
    assert snapshot_in_use().refreshed is False


def test_refreshed_prices_are_used_with_their_date(server: Server) -> None:
    server.body = json.dumps(published_data(gpt_4o_input="3.5")).encode()
    updater = refresh.start_refresh(600, server.url)
    try:
        assert updater.wait(30) is True
    finally:
        updater.stop()
    assert get_price("gpt-4o").base.input == Decimal("3.5")
    assert get_price("claude-sonnet-4-5").long_context[0].rates.input == Decimal(6)  # the rest as published
    snapshot = snapshot_in_use()
    assert (
        snapshot.refreshed is True and snapshot.data_date == data_snapshot.get_snapshot().timestamp.date().isoformat()
    )


def test_a_hanging_fetch_blocks_nothing_and_unusable_data_changes_nothing(server: Server) -> None:
    bundled = get_price("gpt-4o").base.input
    server.hold = True
    server.body = json.dumps([{"id": "openai", "name": "OpenAI", "api_pattern": "x", "models": []}]).encode()
    updater = refresh.start_refresh(600, server.url)
    try:
        assert server.entered.wait(10), "the updater fetches in the background"
        # The fetch is still held by the server: prices answer from the bundled data meanwhile.
        assert get_price("gpt-4o").base.input == bundled and not server.release.is_set()
        server.release.set()
        assert updater.wait(30) is True
    finally:
        updater.stop()
    # The fetched data lacks every overlay model: it is not used, the bundled prices keep pricing.
    assert get_price("gpt-4o").base.input == bundled
    assert snapshot_in_use().refreshed is False
