"""What route modules get from the agent API: the contract for ``functions.agent.usage.routes.register``.

``register(router, deps)`` receives the API's :class:`shared.http.Router` and an :class:`AgentContext`:

- ``deps.db`` -> shared.db.Database: waits (bounded) for the database and the schema, else a 503 with
  Retry-After; use ``with deps.db.transaction() as tx`` or ``deps.db.all/one/scalar/execute``.
- ``deps.current_user(ctx)`` -> ``{"id": str, "email": str | None, "permissions": list[str]}`` from the bearer
  token (verified locally against auth's published keys); raises the 401 ApiError itself.
- ``deps.settings`` -> functions.agent.settings.AgentSettings.
- ``deps.manager`` -> the StartupManager (``require(name)`` for other components).
- ``deps.limiter`` -> shared.ratelimit.RateLimiter (functions/agent/plans.py counts runs per minute with it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.errors import unauthorized
from shared.http import Ctx
from shared.service import require_database

if TYPE_CHECKING:
    from functions.agent.settings import AgentSettings
    from shared.db.database import Database
    from shared.ratelimit import RateLimiter
    from shared.startup import StartupManager


@dataclass
class AgentContext:
    settings: AgentSettings
    manager: StartupManager
    # Plan limits' runs-per-minute counters (Firestore ``rate_limits``, shared by every instance). The API's
    # only: made on first use, so the worker, which shares this context, never imports the rate limiter.
    _limiter: RateLimiter | None = field(default=None, repr=False)

    @property
    def limiter(self) -> RateLimiter:
        if self._limiter is None:
            from shared.ratelimit import RateLimiter

            self._limiter = RateLimiter()
        return self._limiter

    @property
    def db(self) -> Database:
        return require_database(self.manager, self.settings.startup_wait_seconds)

    def current_user(self, ctx: Ctx) -> dict[str, Any]:
        cached = ctx.state.get("user")
        if cached is not None:
            return cached
        token = ctx.bearer
        if not token:
            raise unauthorized()
        verifier = self.manager.require("keyset", self.settings.startup_wait_seconds)
        user = verify_access_token(verifier, token)
        ctx.state["user"] = user
        return user


def verify_access_token(verifier: Any, token: str) -> dict[str, Any]:
    """Claims of a valid access token as the user dict; 401 with the reason code otherwise."""
    from shared.errors import ServiceUnavailable
    from shared.tokens.verify import KeySetUnavailable, TokenInvalid

    try:
        claims = verifier.verify(token)
    except TokenInvalid as exc:
        raise unauthorized(f"access token rejected: {exc}", code=f"token_{exc.reason}") from None
    except KeySetUnavailable:
        # A token signed by a key we have not seen, and auth's key set cannot be fetched right now.
        raise ServiceUnavailable(
            "cannot verify the token: auth's key set is unreachable", retry_after=2, code="keyset_unavailable"
        ) from None
    return {"id": claims.sub, "email": claims.email or None, "permissions": list(claims.permissions)}
