"""A minimal service wired exactly like the real ones: settings, startup manager, database + schema
components, the shared router. Tests start it as a real functions-framework process."""

import functions_framework

from shared.config import CommonSection, DatabaseSection, load_settings
from shared.http import Router
from shared.service import database_components, init_service


class SampleSettings(CommonSection, DatabaseSection):
    pass


settings = load_settings(SampleSettings)
manager = init_service("sample", settings)
manager.register_all(database_components(settings, "sample"))
router = Router("sample", settings.origins, settings.max_body_bytes, health=manager.health)


@router.route("GET", "/count")
def count(ctx):  # noqa: ANN001, ANN201 - test fixture
    # ?wait_s= shortens the bounded wait, so a test can see the 503 path while a dependency is still down.
    manager.require("schema", float(ctx.request.args.get("wait_s", settings.startup_wait_seconds)))
    db = manager.resource("database")
    return {"users": db.scalar("SELECT count(*) FROM users"), "pool_opened": db.connections_opened}


manager.start_when_serving()


@functions_framework.http
def sample(request):  # noqa: ANN001, ANN201
    return router(request)
