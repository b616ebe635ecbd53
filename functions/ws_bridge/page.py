"""The web chat page (docs/WEB.md): its static files at ``/`` and ``/config.json``, which tells the page where
auth and the agent API are (the same base URLs the bridge itself uses). Served elsewhere (a bucket behind
app.<domain>), the page derives auth./api./ws. from its own host name instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from functions.ws_bridge import peers
from functions.ws_bridge.settings import BridgeSettings

STATIC = Path(__file__).parent / "static"


class PageFiles(StaticFiles):
    """Revalidated on every load (ETag), so a deploy shows at once; never sniffed, never sent as a referrer."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response


def routes(settings: BridgeSettings) -> list[Any]:
    async def config(request: Request) -> Response:
        try:
            auth = await peers.url("auth", peers.auth_base(settings.auth_url, settings.auth_jwks_url))
            api = await peers.url("agent-api", settings.agent_api_url)
        except Exception:  # discovery file not there (yet): the page retries on its next load
            return JSONResponse(
                {"error": {"code": "unavailable", "message": "auth or agent API URL not known yet"}},
                503,
                {"Retry-After": "2", "Cache-Control": "no-store"},
            )
        return JSONResponse({"auth_url": auth, "api_url": api}, headers={"Cache-Control": "no-store"})

    return [Route("/config.json", config), Mount("/", PageFiles(directory=STATIC, html=True, check_dir=False))]
