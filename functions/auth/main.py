"""Entry point of the auth function (functions-framework target ``auth``)."""

import functions_framework

from functions.auth.handlers import register
from functions.auth.keys import KeysetSource
from functions.auth.settings import AuthSettings
from shared.config import load_settings
from shared.http import Router
from shared.service import database_components, init_service
from shared.startup import Component, Priority

settings = load_settings(AuthSettings)
manager = init_service("auth", settings)
keys = KeysetSource(settings)
manager.register_all(
    [
        *database_components(settings, "auth"),
        Component("keyset", keys.get, Priority.CRITICAL, timeout_s=30.0),
    ]
)
router = Router("auth", settings.origins, settings.max_body_bytes, health=manager.health)
register(router, settings, manager, keys)
manager.start_when_serving()


@functions_framework.http
def auth(request):  # noqa: ANN001, ANN201 - functions-framework signature
    return router(request)
