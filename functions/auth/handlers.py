"""Token routes: dev login, refresh rotation with reuse detection, logout, validate, me, JWKS, config, tickets."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from functions.auth.context import AuthContext
from functions.auth.store import TICKETS, new_secret
from functions.auth.users import get_user, identities_of, public_user, upsert_by_email
from shared.errors import ApiError, unauthorized
from shared.http import Ctx, Router, StrictBody
from shared.plans import DEFAULT_PLAN
from shared.tokens.verify import TokenInvalid

log = logging.getLogger("auth")


class DevLogin(StrictBody):
    # A plain pattern, not EmailStr: email-validator would add its import time to every cold start.
    email: str = Field("dev@example.com", max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    name: str | None = Field(None, max_length=200)


class RefreshBody(StrictBody):
    refresh_token: str = Field(min_length=20, max_length=200)


class LogoutBody(StrictBody):
    refresh_token: str | None = Field(None, min_length=20, max_length=200)


class ValidateBody(StrictBody):
    token: str = Field(min_length=1, max_length=8192)


class TicketBody(StrictBody):
    ticket: str = Field(min_length=10, max_length=200)


REFRESH_FAILURES = {
    "unknown": ("invalid_refresh_token", "unknown refresh token"),
    "revoked": ("session_revoked", "this session was revoked; sign in again"),
    "reuse": ("reuse_detected", "refresh token reuse detected; the whole session was revoked"),
    "expired": ("refresh_token_expired", "refresh token expired; sign in again"),
}


def register(router: Router, auth: AuthContext) -> None:
    settings = auth.settings

    if settings.dev_login_enabled:
        # Development and test only: load_settings refuses the switch in staging/production (scenario 27),
        # and without the switch the route does not exist at all.
        @router.route("POST", "/auth/dev/login")
        def dev_login(ctx: Ctx) -> Any:
            auth.limit(ctx, "login")
            body = ctx.json(DevLogin)
            user = upsert_by_email(auth.db(), str(body.email), body.name)
            return auth.new_session(user)

    @router.route("POST", "/auth/refresh")
    def refresh(ctx: Ctx) -> Any:
        auth.limit(ctx, "refresh")
        body = ctx.json(RefreshBody)
        rotation = auth.store().rotate(body.refresh_token, settings.refresh_token_ttl_seconds)
        if rotation.outcome != "ok":
            code, message = REFRESH_FAILURES[rotation.outcome]
            if rotation.outcome == "reuse":
                log.warning(
                    "refresh token reuse detected; session revoked",
                    extra={"user_id": rotation.user_id, "session_id": rotation.family_id},
                )
            raise unauthorized(message, code)
        user = get_user(auth.db(), str(rotation.user_id))
        if user is None:
            raise unauthorized("user no longer exists", "invalid_refresh_token")
        assert rotation.family_id and rotation.refresh_token
        return auth.pair(user, rotation.family_id, rotation.refresh_token)

    @router.route("POST", "/auth/logout")
    def logout(ctx: Ctx) -> Any:
        auth.limit(ctx, "logout")
        body = ctx.json(LogoutBody)
        store = auth.store()
        if body.refresh_token:
            family_id = store.family_of(body.refresh_token)
        else:
            family_id = auth.bearer_claims(ctx).sid
            if not family_id:
                raise ApiError(400, "no_session", "this access token names no session; send the refresh_token")
        revoked = bool(family_id) and store.revoke_family(family_id, "logout")
        if revoked:
            log.info("session ended", extra={"session_id": family_id})
        # The same answer whether or not the token was known: logout reveals nothing.
        return {"logged_out": True}

    @router.route("POST", "/auth/validate")
    def validate(ctx: Ctx) -> Any:
        auth.limit(ctx, "validate")
        body = ctx.json(ValidateBody)
        try:
            claims = auth.verify(body.token)
        except TokenInvalid as exc:
            return {"valid": False, "reason": exc.reason}
        return {
            "valid": True,
            "user_id": claims.sub,
            "email": claims.email,
            "permissions": claims.permissions,
            # The plan when the token was issued (tokens from before plans existed: free).
            "plan": claims.plan or DEFAULT_PLAN,
            "expires_at": datetime.fromtimestamp(claims.exp, UTC).isoformat(),
        }

    @router.route("GET", "/auth/me")
    def me(ctx: Ctx) -> Any:
        claims = auth.bearer_claims(ctx)
        db = auth.db()
        user = get_user(db, claims.sub)
        if user is None:
            raise unauthorized("user no longer exists", "invalid_token")
        return {
            **public_user(user),
            "created_at": user["created_at"].isoformat(),
            "identities": [{"provider": i["provider"], "email": i["email"]} for i in identities_of(db, claims.sub)],
        }

    @router.route("GET", "/.well-known/jwks.json")
    def jwks(ctx: Ctx) -> Any:
        try:
            document = auth.keys.jwks()
        except Exception as exc:
            log.warning("keyset unavailable", extra={"reason": type(exc).__name__})
            raise ApiError(
                503, "keyset_unavailable", "signing keys are not available yet", headers={"Retry-After": "2"}
            ) from None
        return document, 200, {"Cache-Control": f"public, max-age={settings.jwks_max_age_seconds}"}

    @router.route("GET", "/auth/config")
    def config(ctx: Ctx) -> Any:
        providers = []
        for name in auth.providers:
            providers.append(
                {"name": name, "available": auth.provider_available(name), "login_url": f"/auth/login?provider={name}"}
            )
        return {
            "environment": settings.netra_env.value,
            "dev_login": settings.dev_login_enabled,
            "providers": providers,
            "issuer": settings.auth_issuer,
            "audience": settings.token_audience,
            "access_token_ttl_s": settings.access_token_ttl_seconds,
            "endpoints": {
                "login": "/auth/login",
                "callback": "/auth/callback",
                "token": "/auth/token",
                "refresh": "/auth/refresh",
                "logout": "/auth/logout",
                "validate": "/auth/validate",
                "me": "/auth/me",
                "jwks": "/.well-known/jwks.json",
                "ws_ticket": "/auth/ws-ticket",
                **({"dev_login": "/auth/dev/login"} if settings.dev_login_enabled else {}),
            },
        }

    @router.route("POST", "/auth/ws-ticket")
    def ws_ticket(ctx: Ctx) -> Any:
        auth.limit(ctx, "ws_ticket")
        claims = auth.bearer_claims(ctx)
        ticket = new_secret(24)
        auth.store().put(
            TICKETS,
            ticket,
            # token_exp: the connection the ticket opens must not outlive the token that minted it.
            {"user_id": claims.sub, "email": claims.email, "permissions": claims.permissions, "token_exp": claims.exp},
            settings.ws_ticket_ttl_seconds,
        )
        return {"ticket": ticket, "expires_in": settings.ws_ticket_ttl_seconds}

    @router.route("POST", "/auth/ws-ticket/redeem")
    def redeem(ctx: Ctx) -> Any:
        auth.limit(ctx, "redeem")
        body = ctx.json(TicketBody)
        data = auth.store().take(TICKETS, body.ticket)
        if data is None:
            raise unauthorized("ticket unknown, expired or already used", "invalid_ticket")
        return {
            "user_id": data["user_id"],
            "email": data["email"],
            "permissions": list(data["permissions"]),
            "token_expires_at": data.get("token_exp"),
        }
