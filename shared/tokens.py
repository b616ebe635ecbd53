"""Access tokens: ES256 JWTs signed only by auth, verified everywhere against auth's published keys.

The keyset (JSON) holds every key that may still verify a live token and names the one that signs:
``{"active_kid": "k2", "keys": [{"kid": "k1", "private_key_pem": "...", "created_at": "..."}, ...]}``.
Rotation without a redeploy: add a key (published at once, signs nothing), later make it active; drop the
old one after the access-token TTL has passed. No Google client library is imported here (cold start).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from jwt.algorithms import ECAlgorithm

ALGORITHM = "ES256"


class TokenInvalid(Exception):
    """A token that must be refused; ``reason`` is a stable code (expired, bad_signature, ...)."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


class KeySetUnavailable(Exception):
    """The published key set could not be fetched (auth not reachable yet)."""


# -- keyset (auth side) ---------------------------------------------------------------------------


def generate_key(kid: str | None = None) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {"kid": kid or uuid.uuid4().hex[:16], "private_key_pem": pem, "created_at": datetime.now(UTC).isoformat()}


def generate_keyset() -> dict[str, Any]:
    key = generate_key()
    return {"active_kid": key["kid"], "keys": [key]}


def parse_keyset(raw: str) -> dict[str, Any]:
    try:
        keyset = json.loads(raw)
        assert isinstance(keyset["keys"], list) and keyset["keys"]
        assert any(k["kid"] == keyset["active_kid"] for k in keyset["keys"])
    except (ValueError, KeyError, TypeError, AssertionError):
        # Never echo the value: it holds private keys.
        raise ValueError('keyset must be JSON {"active_kid": ..., "keys": [{"kid", "private_key_pem"}]}') from None
    return keyset


def _public_jwk(key: dict[str, str]) -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(key["private_key_pem"].encode(), password=None)
    jwk = json.loads(ECAlgorithm.to_jwk(private.public_key()))  # type: ignore[arg-type]
    return {**jwk, "kid": key["kid"], "alg": ALGORITHM, "use": "sig"}


def jwks_from_keyset(keyset: dict[str, Any]) -> dict[str, Any]:
    return {"keys": [_public_jwk(k) for k in keyset["keys"]]}


def sign_access_token(
    keyset: dict[str, Any],
    *,
    user_id: str,
    email: str,
    permissions: list[str],
    issuer: str,
    audience: str,
    ttl_s: int,
    now: float | None = None,
) -> tuple[str, int]:
    """Return (token, expires_at) signed with the active key."""
    key = next(k for k in keyset["keys"] if k["kid"] == keyset["active_kid"])
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": user_id,
        "email": email,
        "permissions": permissions,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    token = jwt.encode(claims, key["private_key_pem"], algorithm=ALGORITHM, headers={"kid": key["kid"]})
    return token, issued + ttl_s


# -- verification (every service) -----------------------------------------------------------------


@dataclass(frozen=True)
class Claims:
    sub: str
    email: str
    permissions: list[str]
    exp: int
    iat: int
    jti: str
    kid: str


class TokenVerifier:
    """Verifies tokens against a JWKS URL, caching keys; refetches on an unknown kid at most once per
    ``min_refresh_interval_s``. Concurrent first verifications share one fetch (scenario 22)."""

    def __init__(
        self,
        jwks_url: Callable[[], str],
        issuer: str,
        audience: str,
        min_refresh_interval_s: float = 30.0,
        fetch_timeout_s: float = 3.0,
        fetch_budget_s: float = 10.0,
    ) -> None:
        self._jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self.min_refresh_interval_s = min_refresh_interval_s
        self.fetch_timeout_s = fetch_timeout_s
        self.fetch_budget_s = fetch_budget_s
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def _fetch(self) -> None:
        import httpx
        from tenacity import Retrying, stop_after_delay, wait_random_exponential

        try:
            for attempt in Retrying(
                stop=stop_after_delay(self.fetch_budget_s),
                wait=wait_random_exponential(multiplier=0.1, max=1.0),
                reraise=True,
            ):
                with attempt:
                    response = httpx.get(self._jwks_url(), timeout=self.fetch_timeout_s)
                    response.raise_for_status()
                    document = response.json()
        except Exception as exc:
            raise KeySetUnavailable(f"key set unreachable: {type(exc).__name__}") from None
        keys = {}
        for jwk in document.get("keys", []):
            if jwk.get("kty") == "EC" and jwk.get("kid"):
                keys[jwk["kid"]] = ECAlgorithm.from_jwk(json.dumps(jwk))
        self._keys = keys
        self._fetched_at = time.monotonic()
        self.fetches += 1

    def warm(self) -> int:
        with self._lock:
            if self._fetched_at is None:
                self._fetch()
        return len(self._keys)

    def _key(self, kid: str) -> Any:
        if kid in self._keys:
            return self._keys[kid]
        with self._lock:
            if kid in self._keys:
                return self._keys[kid]
            recent = self._fetched_at is not None and time.monotonic() - self._fetched_at < self.min_refresh_interval_s
            if not recent:
                self._fetch()
        if kid not in self._keys:
            raise TokenInvalid("unknown_kid", "token signed by an unknown key")
        return self._keys[kid]

    def verify(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenInvalid("malformed", "token is not a JWT") from None
        if header.get("alg") != ALGORITHM:
            raise TokenInvalid("bad_algorithm", f"algorithm must be {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise TokenInvalid("unknown_kid", "token has no key id")
        key = self._key(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenInvalid("expired", "token has expired") from None
        except jwt.InvalidAudienceError:
            raise TokenInvalid("wrong_audience", "token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise TokenInvalid("wrong_issuer", "token is from another issuer") from None
        except jwt.InvalidSignatureError:
            raise TokenInvalid("bad_signature", "token signature is invalid") from None
        except jwt.PyJWTError as exc:
            raise TokenInvalid("malformed", f"token is invalid: {type(exc).__name__}") from None
        return Claims(
            sub=claims["sub"],
            email=claims.get("email", ""),
            permissions=list(claims.get("permissions", [])),
            exp=int(claims["exp"]),
            iat=int(claims["iat"]),
            jti=claims.get("jti", ""),
            kid=kid,
        )


def verifier_from_settings(settings: Any) -> TokenVerifier:
    """For services with a TokenVerifySection: URL from AUTH_JWKS_URL, else local discovery of auth."""

    def url() -> str:
        if settings.auth_jwks_url:
            return settings.auth_jwks_url
        from shared.discovery import lookup_url

        return lookup_url("auth", timeout_s=10) + "/.well-known/jwks.json"

    return TokenVerifier(url, settings.auth_issuer, settings.token_audience, settings.jwks_refresh_min_interval_s)
