"""What every auth route shares: settings, dependencies (waited for, else 503), limits, token issuing."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from functions.auth.keys import KeysetSource
from functions.auth.providers import Provider
from functions.auth.settings import AuthSettings
from functions.auth.users import public_user
from shared.errors import ApiError, unauthorized
from shared.http import Ctx
from shared.plans import DEFAULT_PLAN
from shared.ratelimit import RateLimiter, Rule, client_ip
from shared.service import require_database
from shared.startup import StartupManager
from shared.tokens.keyset import sign_access_token
from shared.tokens.verify import Claims, KeySetUnavailable, TokenInvalid, TokenVerifier

if TYPE_CHECKING:
    from shared.db.database import Database

log = logging.getLogger("auth")


class AuthContext:
    def __init__(
        self,
        settings: AuthSettings,
        manager: StartupManager,
        keys: KeysetSource,
        providers: dict[str, Provider],
        limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.manager = manager
        self.keys = keys
        self.providers = providers
        # Providers with a startup component (OpenID discovery); the others need nothing fetched first.
        self.provider_components = {name: f"provider_{name}" for name, p in providers.items() if hasattr(p, "discover")}
        self.limiter = limiter or RateLimiter()
        per_minute = settings.rate_limit_per_minute
        self.rules = {
            "login": Rule("login", per_minute),
            "token": Rule("token", per_minute),
            "refresh": Rule("refresh", per_minute),
            "validate": Rule("validate", settings.validate_rate_limit_per_minute),
            "logout": Rule("logout", per_minute),
            # A browser mints a ticket per (re)connect and a bridge instance redeems all of its users' tickets
            # from one address: the higher validate limit, not the sign-in one.
            "ws_ticket": Rule("ws_ticket", settings.validate_rate_limit_per_minute),
            "redeem": Rule("redeem", settings.validate_rate_limit_per_minute),
        }
        # Auth verifies its own tokens from the keyset directly: no HTTP round trip to itself, and a
        # rotated-in key is known as soon as the keyset is re-read.
        self.verifier = TokenVerifier(
            lambda: "",
            settings.auth_issuer,
            settings.token_audience,
            min_refresh_interval_s=0,
            fetch_jwks=keys.jwks,
            always_current=True,
        )

    # -- dependencies ------------------------------------------------------------------------------
    def db(self) -> Database:
        return require_database(self.manager, self.settings.startup_wait_seconds)

    def store(self) -> Any:
        return self.manager.require("firestore", self.settings.startup_wait_seconds)

    def provider_available(self, name: str) -> bool:
        component = self.provider_components.get(name)
        return component is None or self.manager.is_up(component)

    def require_provider(self, name: str) -> None:
        """503 + Retry-After while the provider's discovery has not succeeded."""
        component = self.provider_components.get(name)
        if component:
            self.manager.require(component, timeout_s=2.0)

    # -- request helpers ---------------------------------------------------------------------------
    def client_key(self, ctx: Ctx) -> str:
        return client_ip(ctx.request.headers, ctx.request.remote_addr, self.settings.trusted_proxy_hops)

    def limit(self, ctx: Ctx, action: str) -> None:
        # validate is counted locally and synced in the background: its path must not wait on Firestore.
        self.limiter.hit(self.rules[action], self.client_key(ctx), deferred=action == "validate")

    def verify(self, token: str) -> Claims:
        try:
            return self.verifier.verify(token)
        except KeySetUnavailable:
            raise ApiError(
                503, "keyset_unavailable", "signing keys are not available yet", headers={"Retry-After": "2"}
            ) from None

    def bearer_claims(self, ctx: Ctx) -> Claims:
        if not ctx.bearer:
            raise unauthorized()
        try:
            return self.verify(ctx.bearer)
        except TokenInvalid as exc:
            raise unauthorized(f"invalid token: {exc.reason}", "invalid_token") from None

    def public_url(self, ctx: Ctx) -> str:
        # Locally auth's port is only known at run time; in the cloud AUTH_PUBLIC_URL is required.
        return self.settings.auth_public_url or ctx.request.host_url.rstrip("/")

    # -- tokens ----------------------------------------------------------------------------------
    def access_token(self, user: dict[str, Any], family_id: str) -> str:
        self.manager.require("keyset", self.settings.startup_wait_seconds)
        token, _ = sign_access_token(
            self.keys.get(),
            user_id=str(user["id"]),
            email=user["email"],
            permissions=list(user["permissions"]),
            issuer=self.settings.auth_issuer,
            audience=self.settings.token_audience,
            ttl_s=self.settings.access_token_ttl_seconds,
            session_id=family_id,
            publish_lead_s=self.settings.token_key_publish_lead_seconds,
            plan=user.get("plan") or DEFAULT_PLAN,
        )
        return token

    def pair(self, user: dict[str, Any], family_id: str, refresh_token: str) -> dict[str, Any]:
        return {
            "access_token": self.access_token(user, family_id),
            "refresh_token": refresh_token,
            "token_type": "Bearer",
            "expires_in": self.settings.access_token_ttl_seconds,
            "user": public_user(user),
        }

    def new_session(self, user: dict[str, Any]) -> dict[str, Any]:
        family_id, refresh_token = self.store().start_family(str(user["id"]), self.settings.refresh_token_ttl_seconds)
        log.info("session started", extra={"user_id": str(user["id"]), "session_id": family_id})
        return self.pair(user, family_id, refresh_token)
