"""Who is connecting: the credential methods of /ws, checked in a fixed order."""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from dataclasses import dataclass
from typing import Any

from functions.ws_bridge import peers
from functions.ws_bridge.settings import BridgeSettings
from shared.errors import NetraError
from shared.models.ws import CLOSE_POLICY, CLOSE_TRY_AGAIN
from shared.tokens.verify import KeySetUnavailable, TokenInvalid, TokenVerifier

SUBPROTOCOL = "jwt-auth"


@dataclass(frozen=True)
class Identity:
    user_id: str
    token: str | None  # None for ticket connections: they cannot chat until an `auth` frame brings a token
    expires_at: float
    method: str  # subprotocol, bearer, ticket, query_token


class Refused(NetraError):
    """The connection is refused with ``code`` (1008 for bad credentials, 1013 when auth is unreachable)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def offered_protocols(headers: Any) -> list[str]:
    return [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()]


def _decode_subprotocol_token(protocols: list[str]) -> str:
    encoded = next((p[4:] for p in protocols if p.startswith("jwt.")), None)
    if not encoded:
        raise Refused(CLOSE_POLICY, "jwt-auth subprotocol without a jwt.<base64url token> entry")
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise Refused(CLOSE_POLICY, "jwt.<token> subprotocol is not base64url") from None


async def verify(verifier: TokenVerifier, token: str) -> Any:
    try:
        return await asyncio.to_thread(verifier.verify, token)
    except TokenInvalid as exc:
        raise Refused(CLOSE_POLICY, f"invalid token: {exc.reason}") from None
    except KeySetUnavailable:
        raise Refused(CLOSE_TRY_AGAIN, "token keys unavailable; retry shortly") from None


async def redeem_ticket(settings: BridgeSettings, ticket: str) -> Identity:
    """POST {ticket} to auth's /auth/ws-ticket/redeem (single use, 60 s): 200 {user_id}, or 401."""
    base = await peers.url("auth", peers.auth_base(settings.auth_url, settings.auth_jwks_url))
    try:
        response = await peers.client().post(f"{base}/auth/ws-ticket/redeem", json={"ticket": ticket}, timeout=5.0)
    except Exception as exc:
        raise Refused(CLOSE_TRY_AGAIN, f"auth unreachable ({type(exc).__name__}); retry shortly") from None
    if response.status_code in (400, 401, 404, 422):
        raise Refused(CLOSE_POLICY, "invalid ticket: unknown, expired or already used")
    if response.status_code != 200:
        raise Refused(CLOSE_TRY_AGAIN, f"auth answered {response.status_code}; retry shortly")
    redeemed = response.json()
    expires_at = time.time() + settings.ticket_connection_ttl_s
    # Bounded by the access token that minted the ticket too: a connection must not outlive it (issue 15).
    token_exp = redeemed.get("token_expires_at")
    if isinstance(token_exp, int | float) and not isinstance(token_exp, bool):
        expires_at = min(expires_at, float(token_exp))
    return Identity(redeemed["user_id"], None, expires_at, "ticket")


async def authenticate(headers: Any, query: Any, settings: BridgeSettings, verifier: TokenVerifier) -> Identity:
    """Subprotocols, then Authorization: Bearer, then ?ticket=, then ?token= (development only)."""
    protocols = offered_protocols(headers)
    authorization = headers.get("authorization", "")
    if SUBPROTOCOL in protocols:
        token, method = _decode_subprotocol_token(protocols), "subprotocol"
    elif authorization[:7].lower() == "bearer " and authorization[7:].strip():
        token, method = authorization[7:].strip(), "bearer"
    elif query.get("ticket"):
        return await redeem_ticket(settings, query["ticket"])
    elif query.get("token"):
        if not settings.ws_allow_query_token:
            raise Refused(CLOSE_POLICY, "tokens in the query string are refused; use the jwt-auth subprotocol")
        token, method = query["token"], "query_token"
    else:
        raise Refused(CLOSE_POLICY, "missing credentials: use the jwt-auth subprotocol, a Bearer header or a ticket")
    claims = await verify(verifier, token)
    return Identity(claims.sub, token, float(claims.exp), method)
