"""Operator refresh of list prices without a redeploy: genai-prices' own background updater (``UpdatePrices``)
fetches its published price data every ``interval_s`` seconds in a daemon thread. Off by default
(PRICES_REFRESH); when on it never blocks a request or a start: ``start`` returns at once, prices are served from
the bundled data until a fetch succeeds, and a failed fetch is logged by the package and changes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("shared.pricing.refresh")


def start_refresh(interval_s: float, url: str = "") -> Any:
    """Start the background updater (no wait) and return it (``stop()`` ends its share of the thread)."""
    from genai_prices import UpdatePrices
    from genai_prices.update_prices import DEFAULT_UPDATE_URL

    updater = UpdatePrices(update_interval=interval_s, url=url or DEFAULT_UPDATE_URL)
    updater.start(wait=False)
    log.info("price refresh started", extra={"interval_s": interval_s})
    return updater
