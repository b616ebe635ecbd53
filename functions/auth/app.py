"""``create_app(settings)``: the auth service with its :class:`AuthContext` and router.

Cold start: nothing here imports a Google client library (tokens with PyJWT, see shared/tokens/). A local
keyset (env or .local file) is loaded here, in gunicorn's master, so forked workers verify at once.
Components that validate does not need (database, Firestore, provider discovery) start after the first
response or half a second after start, whichever comes first, or at once when a request needs them: their
imports and connections do not compete with the first request for the GIL.
"""

from __future__ import annotations

from typing import Any

from functions.auth import handlers, signin
from functions.auth.context import AuthContext
from functions.auth.keys import KeysetSource
from functions.auth.providers import build_providers
from functions.auth.settings import AuthSettings
from shared.http import Router
from shared.service import database_components, init_service
from shared.startup import Component, Priority, RetryPolicy


def start_firestore() -> object:
    from functions.auth.store import AuthStore

    store = AuthStore()
    store.ping()
    return store


def components(context: AuthContext) -> list[Component]:
    settings = context.settings
    found = [
        *database_components(settings, "auth", deferred=True),
        Component("keyset", context.keys.get, Priority.CRITICAL, timeout_s=30.0),
        Component(
            "firestore",
            start_firestore,
            Priority.CRITICAL,
            timeout_s=15.0,
            retry=RetryPolicy(initial_s=0.5, max_s=10.0),
            deferred=True,
        ),
    ]
    for name, component in context.provider_components.items():
        # Non-critical: a provider whose discovery document is unreachable is reported unavailable while dev
        # login, validation and the other provider keep working (scenario 19).
        found.append(
            Component(
                component,
                context.providers[name].discover,  # type: ignore[union-attr]
                Priority.MEDIUM,
                timeout_s=settings.provider_timeout_seconds + 1,
                retry=RetryPolicy(initial_s=1.0, max_s=10.0),
                deferred=True,
            )
        )
    return found


class AuthApp:
    """What main.py's ``auth`` entry point calls."""

    def __init__(self, context: AuthContext, router: Router) -> None:
        self.context = context
        self.router = router

    def http(self, request: Any) -> Any:
        try:
            return self.router(request)
        finally:
            self.context.manager.release_deferred()  # deferred components (Component.deferred) may start now


def create_app(settings: AuthSettings) -> AuthApp:
    manager = init_service("auth", settings)
    keys = KeysetSource(settings)
    context = AuthContext(settings, manager, keys, build_providers(settings))
    manager.register_all(components(context))
    router = Router("auth", settings.origins, settings.max_body_bytes, health=manager.health)
    handlers.register(router, context)
    signin.register(router, context)
    if not settings.token_keyset_secret:
        keys.get()  # env or local file: cheap, and inherited by the forked worker (Secret Manager waits for it)
    manager.start_when_serving()
    return AuthApp(context, router)
