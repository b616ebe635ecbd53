"""Auth routes: dev login, refresh rotation with reuse detection, validate, me, JWKS, config, ws tickets."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, EmailStr, Field

from functions.auth.keys import KeysetSource
from functions.auth.settings import AuthSettings
from shared.errors import ApiError, unauthorized
from shared.http import Ctx, Router
from shared.startup import StartupManager
from shared.tokens import TokenInvalid, TokenVerifier, jwks_from_keyset, sign_access_token


class DevLogin(BaseModel):
    email: EmailStr = "dev@example.com"
    name: str | None = Field(None, max_length=200)


class RefreshBody(BaseModel):
    refresh_token: str = Field(min_length=20, max_length=200)


class LogoutBody(BaseModel):
    refresh_token: str | None = Field(None, max_length=200)


class ValidateBody(BaseModel):
    token: str = Field(min_length=1, max_length=8192)


class TicketBody(BaseModel):
    ticket: str = Field(min_length=10, max_length=200)


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class LocalVerifier(TokenVerifier):
    """Auth verifies its own tokens from the keyset directly (no HTTP round trip to itself)."""

    def __init__(self, keys: KeysetSource, issuer: str, audience: str) -> None:
        super().__init__(lambda: "", issuer, audience, min_refresh_interval_s=0)
        self.keys = keys

    def _fetch(self) -> None:
        import json

        from jwt.algorithms import ECAlgorithm

        self._keys = {k["kid"]: ECAlgorithm.from_jwk(json.dumps(k)) for k in jwks_from_keyset(self.keys.get())["keys"]}
        import time

        self._fetched_at = time.monotonic()


def register(router: Router, settings: AuthSettings, manager: StartupManager, keys: KeysetSource) -> None:
    verifier = LocalVerifier(keys, settings.auth_issuer, settings.token_audience)

    def db() -> Any:
        manager.require("schema", settings.startup_wait_seconds)
        return manager.resource("database")

    def rate_limit(ctx: Ctx, action: str) -> None:
        window = datetime.now(UTC).replace(second=0, microsecond=0)
        hits = db().scalar(
            "INSERT INTO rate_limits (bucket, window_start, hits) VALUES (%s, %s, 1) "
            "ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1 RETURNING hits",
            (f"{action}:{ctx.client_ip}", window),
        )
        if hits > settings.rate_limit_per_minute:
            retry = 60 - datetime.now(UTC).second
            raise ApiError(
                429,
                "rate_limited",
                f"too many {action} requests; retry in {retry} s",
                headers={"Retry-After": str(max(1, retry))},
            )

    def issue_pair(tx: Any, user: dict[str, Any], family_id: str | None = None) -> dict[str, Any]:
        keyset = keys.get()
        access, expires_at = sign_access_token(
            keyset,
            user_id=str(user["id"]),
            email=user["email"],
            permissions=list(user["permissions"]),
            issuer=settings.auth_issuer,
            audience=settings.token_audience,
            ttl_s=settings.access_token_ttl_seconds,
        )
        refresh = secrets.token_urlsafe(32)
        if family_id is None:
            family_id = str(uuid.uuid4())
            tx.execute("INSERT INTO refresh_families (id, user_id) VALUES (%s, %s)", (family_id, user["id"]))
        tx.execute(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at) VALUES (%s, %s, %s, %s)",
            (
                _hash(refresh),
                family_id,
                user["id"],
                datetime.now(UTC) + timedelta(seconds=settings.refresh_token_ttl_seconds),
            ),
        )
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": settings.access_token_ttl_seconds,
            "user": {
                "id": str(user["id"]),
                "email": user["email"],
                "name": user.get("name"),
                "permissions": list(user["permissions"]),
            },
        }

    def bearer_claims(ctx: Ctx) -> Any:
        if not ctx.bearer:
            raise unauthorized()
        try:
            return verifier.verify(ctx.bearer)
        except TokenInvalid as exc:
            raise unauthorized(f"invalid token: {exc.reason}", "invalid_token") from None

    if settings.dev_login_enabled:

        @router.route("POST", "/auth/dev/login")
        def dev_login(ctx: Ctx) -> Any:
            rate_limit(ctx, "login")
            body = ctx.json(DevLogin)
            with db().transaction() as tx:
                user = tx.one(
                    "INSERT INTO users (email, name, last_login_at) VALUES (%s, %s, now()) "
                    "ON CONFLICT (email) DO UPDATE SET last_login_at = now(), "
                    "name = COALESCE(EXCLUDED.name, users.name) RETURNING id, email, name, permissions",
                    (str(body.email).lower(), body.name),
                )
                return issue_pair(tx, user)

    @router.route("POST", "/auth/refresh")
    def refresh(ctx: Ctx) -> Any:
        rate_limit(ctx, "refresh")
        body = ctx.json(RefreshBody)
        database = db()
        outcome: dict[str, Any] | None = None
        with database.transaction() as tx:
            # FOR UPDATE serialises racing refreshes of one token: exactly one sees used_at IS NULL (scenario 21).
            row = tx.one(
                "SELECT t.family_id, t.user_id, t.used_at, t.expires_at, f.revoked_at FROM refresh_tokens t "
                "JOIN refresh_families f ON f.id = t.family_id WHERE t.token_hash = %s FOR UPDATE OF t, f",
                (_hash(body.refresh_token),),
            )
            if row is None:
                raise unauthorized("unknown refresh token", "invalid_refresh_token")
            if row["revoked_at"] is not None:
                raise unauthorized("this session was revoked; sign in again", "session_revoked")
            if row["used_at"] is not None:
                tx.execute(
                    "UPDATE refresh_families SET revoked_at = now(), revoked_reason = 'reuse' WHERE id = %s",
                    (row["family_id"],),
                )
                outcome = None
            elif row["expires_at"] < datetime.now(UTC):
                raise unauthorized("refresh token expired; sign in again", "refresh_token_expired")
            else:
                tx.execute(
                    "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = %s", (_hash(body.refresh_token),)
                )
                user = tx.one("SELECT id, email, name, permissions FROM users WHERE id = %s", (row["user_id"],))
                outcome = issue_pair(tx, user, str(row["family_id"]))
        if outcome is None:
            raise unauthorized("refresh token reuse detected; the whole session was revoked", "reuse_detected")
        return outcome

    @router.route("POST", "/auth/logout")
    def logout(ctx: Ctx) -> Any:
        body = ctx.json(LogoutBody)
        if body.refresh_token:
            db().execute(
                "UPDATE refresh_families SET revoked_at = now(), revoked_reason = 'logout' WHERE id = "
                "(SELECT family_id FROM refresh_tokens WHERE token_hash = %s) AND revoked_at IS NULL",
                (_hash(body.refresh_token),),
            )
        else:
            claims = bearer_claims(ctx)
            db().execute(
                "UPDATE refresh_families SET revoked_at = now(), revoked_reason = 'logout' "
                "WHERE user_id = %s AND revoked_at IS NULL",
                (claims.sub,),
            )
        return {"logged_out": True}

    @router.route("POST", "/auth/validate")
    def validate(ctx: Ctx) -> Any:
        rate_limit(ctx, "validate")
        body = ctx.json(ValidateBody)
        try:
            claims = verifier.verify(body.token)
        except TokenInvalid as exc:
            return {"valid": False, "reason": exc.reason}
        return {
            "valid": True,
            "user_id": claims.sub,
            "email": claims.email,
            "permissions": claims.permissions,
            "expires_at": datetime.fromtimestamp(claims.exp, UTC).isoformat(),
        }

    @router.route("GET", "/auth/me")
    def me(ctx: Ctx) -> Any:
        claims = bearer_claims(ctx)
        user = db().one("SELECT id, email, name, permissions, created_at FROM users WHERE id = %s", (claims.sub,))
        if user is None:
            raise unauthorized("user no longer exists", "invalid_token")
        return {**user, "id": str(user["id"])}

    @router.route("GET", "/.well-known/jwks.json")
    def jwks(ctx: Ctx) -> Any:
        return jwks_from_keyset(keys.get()), 200, {"Cache-Control": "public, max-age=300"}

    @router.route("GET", "/auth/config")
    def config(ctx: Ctx) -> Any:
        return {
            "environment": settings.netra_env.value,
            "dev_login": settings.dev_login_enabled,
            "providers": [],
            "issuer": settings.auth_issuer,
            "audience": settings.token_audience,
            "endpoints": {
                "jwks": "/.well-known/jwks.json",
                "validate": "/auth/validate",
                "refresh": "/auth/refresh",
                "ws_ticket": "/auth/ws-ticket",
            },
        }

    @router.route("POST", "/auth/ws-ticket")
    def ws_ticket(ctx: Ctx) -> Any:
        claims = bearer_claims(ctx)
        ticket = secrets.token_urlsafe(24)
        db().execute(
            "INSERT INTO ws_tickets (ticket_hash, user_id, expires_at) VALUES (%s, %s, now() + interval '60 s')",
            (_hash(ticket), claims.sub),
        )
        return {"ticket": ticket, "expires_in": 60}

    @router.route("POST", "/auth/ws-ticket/redeem")
    def redeem(ctx: Ctx) -> Any:
        body = ctx.json(TicketBody)
        row = db().one(
            "UPDATE ws_tickets SET used_at = now() WHERE ticket_hash = %s AND used_at IS NULL "
            "AND expires_at > now() RETURNING user_id",
            (_hash(body.ticket),),
        )
        if row is None:
            raise unauthorized("ticket unknown, expired or already used", "invalid_ticket")
        user = db().one("SELECT id, email, permissions FROM users WHERE id = %s", (row["user_id"],))
        return {"user_id": str(user["id"]), "email": user["email"], "permissions": list(user["permissions"])}
