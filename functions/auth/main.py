"""Entry point of the auth function (functions-framework target ``auth``).

Import cost is kept to what /auth/validate needs (cold start): Firestore, provider discovery and the
database start as components after the worker forks; no Google client library is imported here.
"""

import functions_framework

from functions.auth import handlers, signin
from functions.auth.context import AuthContext
from functions.auth.keys import KeysetSource
from functions.auth.providers import build_providers
from functions.auth.settings import AuthSettings
from shared.config import load_settings
from shared.http import Router
from shared.service import database_components, init_service
from shared.startup import Component, Priority, RetryPolicy

settings = load_settings(AuthSettings)
manager = init_service("auth", settings)
keys = KeysetSource(settings)
providers = build_providers(settings)


def start_firestore() -> object:
    from functions.auth.store import AuthStore

    store = AuthStore()
    store.ping()
    return store


components = [
    *database_components(settings, "auth"),
    Component("keyset", keys.get, Priority.CRITICAL, timeout_s=30.0),
    Component("firestore", start_firestore, Priority.CRITICAL, timeout_s=15.0,
              retry=RetryPolicy(initial_s=0.5, max_s=10.0), breaker_recovery_s=5.0),
]
app = AuthContext(settings, manager, keys, providers)
for name, component in app.provider_components.items():
    # Non-critical: a provider whose discovery document is unreachable is reported unavailable while dev
    # login, validation and the other provider keep working (scenario 19).
    components.append(Component(component, providers[name].discover, Priority.MEDIUM,  # type: ignore[union-attr]
                                timeout_s=settings.provider_timeout_seconds + 1,
                                retry=RetryPolicy(initial_s=1.0, max_s=10.0), breaker_recovery_s=5.0))
manager.register_all(components)
router = Router("auth", settings.origins, settings.max_body_bytes, health=manager.health)
handlers.register(router, app)
signin.register(router, app)
manager.start_when_serving()


@functions_framework.http
def auth(request):  # noqa: ANN001, ANN201 - functions-framework signature
    return router(request)
