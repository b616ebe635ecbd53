"""The API's token verifier: auth's published keys, fetched once at start (a startup component) and reused."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.tokens.verify import TokenVerifier, verifier_from_settings

if TYPE_CHECKING:
    from functions.agent.settings import AgentSettings


def build_verifier(settings: AgentSettings) -> TokenVerifier:
    """Fetch the key set now so the first request verifies locally; KeySetUnavailable is retried by the
    startup manager with backoff until auth is reachable (scenario 9)."""
    verifier = verifier_from_settings(settings)
    verifier.warm()
    return verifier
