"""The API's token verifier: auth's published keys, fetched once at start (a startup component) and reused."""

from __future__ import annotations

from typing import Any

from shared.tokens.verify import TokenVerifier, verifier_from_settings


def build_verifier(settings: Any) -> TokenVerifier:
    """Fetch the key set now so the first request verifies locally; KeySetUnavailable is retried by the
    startup manager with backoff until auth is reachable (scenario 9)."""
    verifier = verifier_from_settings(settings)
    verifier.warm()
    return verifier
