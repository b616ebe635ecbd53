"""Startup components of the agent API and the agent worker (what each needs before it can serve)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.service import database_components
from shared.startup import Component, Priority, RetryPolicy

if TYPE_CHECKING:
    from functions.agent.settings import AgentSettings


def _pubsub(project: str) -> Any:
    def start() -> Any:
        from functions.agent import pubsub

        pubsub.warm(project)
        return True

    return start


def _firestore(probe: bool) -> Any:
    def start() -> Any:
        from shared.firestore import get_client

        client = get_client()
        if probe:
            # Client construction never touches the network, so without one read a Firestore that is down
            # would show as "up" and /health/startup could not say the API runs degraded (scenario 13).
            # One attempt per start: the startup manager owns the retries and the breaker.
            client.collection("_health").document("probe").get(timeout=3.0, retry=None)
        return client

    return start


def _tokens(settings: AgentSettings) -> Any:
    def start() -> Any:
        from functions.agent.tokens import build_verifier

        return build_verifier(settings)

    return start


def _prices(settings: AgentSettings) -> Any:
    def start() -> Any:
        # Loading the price data takes about a second: done here, after the start, not on a request. With
        # PRICES_REFRESH the package's updater then fetches newer data in its own daemon thread (no wait).
        from shared.pricing import known_models, refresh

        known_models()
        if settings.prices_refresh:
            return refresh.start_refresh(settings.prices_refresh_interval_s, settings.prices_refresh_url)
        return True

    return start


def components(role: str, settings: AgentSettings) -> list[Component]:
    """``role`` is "api" or "worker"."""
    name = "agent-api" if role == "api" else "agent-worker"
    found = database_components(settings, name)
    # Pub/Sub: client construction only (no network); the library import is the slow part. The API's first
    # request is usually a read (threads, runs), so the Pub/Sub and Firestore client imports are deferred until
    # it is answered (or a POST requires them): they do not slow it down (cold start).
    api = role == "api"
    found.append(
        Component(
            "pubsub",
            _pubsub(settings.google_cloud_project),
            Priority.HIGH,
            timeout_s=30.0,
            retry=RetryPolicy(initial_s=0.5, max_s=10.0),
            deferred=api,
        )
    )
    # The API needs Firestore only for the event log routes: start it after Pub/Sub, which the first POST
    # needs, so that the two library imports do not compete for the interpreter.
    found.append(
        Component(
            "firestore",
            _firestore(probe=api),
            Priority.MEDIUM if api else Priority.HIGH,
            depends_on=("pubsub",) if api else (),
            timeout_s=30.0,
            retry=RetryPolicy(initial_s=0.5, max_s=10.0),
            deferred=api,
        )
    )
    found.append(
        Component(
            "prices",
            _prices(settings),
            Priority.LOW,
            timeout_s=60.0,
            retry=RetryPolicy(initial_s=1.0, max_s=30.0),
            deferred=api,
        )
    )
    if api:
        found.append(
            Component(
                # One name in every service for the key set tokens are signed or verified with (here auth's
                # public keys, fetched from its JWKS URL), so health bodies and 503 codes read the same.
                "keyset",
                _tokens(settings),
                Priority.CRITICAL,
                timeout_s=15.0,
                retry=RetryPolicy(initial_s=0.3, max_s=5.0),
                breaker_recovery_s=3.0,
            )
        )
    return found
