"""Sign-in with a provider: /auth/login -> provider -> /auth/callback -> front end ?code= -> POST /auth/token.

- ``state``: random, single use, TTL, stored only hashed; it carries return_to, the PKCE verifier and the
  nonce, so nothing the browser brings back is trusted except the state itself.
- A cookie scoped to /auth/callback binds the state to the browser that started the sign-in (login CSRF).
- PKCE S256 towards the provider, and required towards the front end (a public client): the ``code_challenge``
  given to /auth/login must be answered with its ``code_verifier`` at /auth/token, so an intercepted one-time
  code is useless.
- Tokens never appear in a URL: the front end gets a one-time code (single use, 60 s) and exchanges it.
"""

from __future__ import annotations

import hmac
import logging
import re
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Response
from pydantic import BaseModel, Field

from functions.auth.context import AuthContext
from functions.auth.providers import SignInError, pkce_challenge
from functions.auth.store import CODES, STATES, digest, new_secret
from functions.auth.users import get_user, link_identity
from shared.errors import ApiError
from shared.http import Ctx, Router, StrictBody, origin_allowed

log = logging.getLogger("auth.signin")

PKCE_VALUE = r"^[A-Za-z0-9._~-]{43,128}$"


class LoginQuery(BaseModel):
    provider: Literal["google", "github"]
    return_to: str = Field(min_length=1, max_length=2048)
    # PKCE is required: every front end of auth is a public client (a page in a browser), which has no secret
    # to bind the one-time code to, so an intercepted code would otherwise be enough to get tokens.
    code_challenge: str = Field(pattern=r"^[A-Za-z0-9_-]{43}$")
    code_challenge_method: Literal["S256"]
    login_hint: str | None = Field(None, max_length=254)


class CallbackQuery(BaseModel):
    state: str | None = Field(None, max_length=200)
    code: str | None = Field(None, max_length=2048)
    error: str | None = Field(None, max_length=200)


class TokenBody(StrictBody):
    code: str = Field(min_length=20, max_length=200)
    code_verifier: str = Field(pattern=PKCE_VALUE)


def return_to_allowed(url: str, origins: list[str]) -> bool:
    """Only absolute http(s) URLs on an allowed front-end origin: no open redirect.

    Refuses what browsers and parsers disagree on: backslashes, whitespace or control characters,
    userinfo (``https://app.example.com@evil.example``), and scheme-relative URLs.
    """
    if re.search(r"[\x00-\x20\\\x7f]", url):
        return False
    try:
        # urlsplit raises ValueError for a netloc that changes under NFKC normalisation (fullwidth ／ or ＠,
        # which a browser would read as / or @) and for a malformed port.
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if not parts.netloc.isascii():
        return False  # an internationalised host must come as punycode (xn--), like the allow-list holds it
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return False
    origin = f"{parts.scheme}://{parts.hostname}" + (f":{port}" if port else "")
    return origin_allowed(origin, origins)


def with_params(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ("code", "error")]
    return urlunsplit(parts._replace(query=urlencode(query + list(params.items()))))


def redirect(location: str, cookies: list[str] | None = None) -> Response:
    response = Response("", status=302)
    response.headers["Location"] = location
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the callback URL holds a provider code
    for cookie in cookies or []:
        response.headers.add("Set-Cookie", cookie)
    return response


def _binding_cookie(state: str) -> str:
    return f"netra_signin_{digest(state)[:16]}"


def register(router: Router, auth: AuthContext) -> None:
    settings = auth.settings

    def cookie(name: str, value: str, max_age: int, public_url: str) -> str:
        secure = "; Secure" if public_url.startswith("https://") else ""
        return f"{name}={value}; Max-Age={max_age}; Path=/auth/callback; HttpOnly; SameSite=Lax{secure}"

    @router.route("GET", "/auth/login")
    def login(ctx: Ctx) -> Any:
        auth.limit(ctx, "login")
        query = ctx.query(LoginQuery)
        provider = auth.providers.get(query.provider)
        if provider is None:
            raise ApiError(400, "provider_not_enabled", f"{query.provider} sign-in is not configured here")
        if not return_to_allowed(query.return_to, settings.origins):
            raise ApiError(400, "invalid_return_to", "return_to must be a URL on an allowed front-end origin")
        auth.require_provider(query.provider)
        public_url = auth.public_url(ctx)
        redirect_uri = f"{public_url}/auth/callback"
        state, nonce, verifier, binding = new_secret(), new_secret(), new_secret(48), new_secret(16)
        auth.store().put(
            STATES,
            state,
            {
                "provider": query.provider,
                "return_to": query.return_to,
                "redirect_uri": redirect_uri,
                "nonce": nonce,
                "code_verifier": verifier,
                "client_challenge": query.code_challenge,
                "binding": digest(binding),
            },
            settings.oauth_state_ttl_seconds,
        )
        location = provider.authorize_url(redirect_uri, state, nonce, verifier, query.login_hint)
        log.info("sign-in started", extra={"provider": query.provider})
        return redirect(
            location, [cookie(_binding_cookie(state), binding, settings.oauth_state_ttl_seconds, public_url)]
        )

    @router.route("GET", "/auth/callback")
    def callback(ctx: Ctx) -> Any:
        auth.limit(ctx, "login")
        query = ctx.query(CallbackQuery)
        if not query.state:
            raise ApiError(400, "invalid_state", "the sign-in state is missing")
        data = auth.store().take(STATES, query.state)
        if data is None:
            raise ApiError(400, "invalid_state", "unknown, expired or already used sign-in state; start again")
        cookie_name = _binding_cookie(query.state)
        clear = [cookie(cookie_name, "", 0, auth.public_url(ctx))]
        binding = ctx.request.cookies.get(cookie_name, "")
        if not hmac.compare_digest(digest(binding), data["binding"]):
            raise ApiError(400, "invalid_state", "this sign-in was started in another browser; start again")
        return_to = data["return_to"]
        provider = auth.providers.get(data["provider"])
        try:
            if query.error or not query.code:
                raise SignInError(
                    "access_denied" if query.error else "missing_code", "the provider did not grant access"
                )
            if provider is None:
                raise SignInError("provider_not_enabled", "provider is no longer configured")
            identity = provider.exchange(query.code, data["code_verifier"], data["redirect_uri"], data["nonce"])
        except SignInError as exc:
            log.warning("sign-in failed", extra={"provider": data["provider"], "reason": exc.code})
            return redirect(with_params(return_to, error=exc.code), clear)
        user = link_identity(auth.db(), identity.provider, identity.subject, identity.email, identity.name)
        code = new_secret()
        auth.store().put(
            CODES,
            code,
            {
                "user_id": str(user["id"]),
                "client_challenge": data.get("client_challenge"),
                "provider": identity.provider,
            },
            settings.auth_code_ttl_seconds,
        )
        log.info("sign-in completed", extra={"provider": identity.provider, "user_id": str(user["id"])})
        return redirect(with_params(return_to, code=code), clear)

    @router.route("POST", "/auth/token")
    def token(ctx: Ctx) -> Any:
        auth.limit(ctx, "token")
        body = ctx.json(TokenBody)
        data = auth.store().take(CODES, body.code)  # taken even if the verifier is wrong: one try per code
        if data is None:
            raise ApiError(400, "invalid_grant", "code unknown, expired or already used")
        challenge = data.get("client_challenge") or ""
        # A code without a challenge (issued before PKCE became required) is refused like a wrong verifier.
        if not hmac.compare_digest(pkce_challenge(body.code_verifier), challenge):
            log.warning("one-time code presented with a wrong PKCE verifier", extra={"user_id": data["user_id"]})
            raise ApiError(400, "invalid_grant", "code_verifier does not match the code_challenge")
        user = get_user(auth.db(), data["user_id"])
        if user is None:
            raise ApiError(400, "invalid_grant", "the user of this code no longer exists")
        return auth.new_session(user)
