"""Access tokens: ES256 JWTs signed only by auth (:mod:`shared.tokens.keyset`), verified everywhere
against auth's published keys (this module).

Encoding and verification are PyJWT's (algorithm pinned to ES256; exp, iat, sub, iss and aud required). A
hand-written ES256 on bare `cryptography` was tried for import time and measured: PyJWT adds 40-165 ms of
import, yet auth's cold start was the same within noise with either and missed the 1.5x target with both
(figures in docs/PERFORMANCE.md, "Auth"), so the well-kept library stays.

No Google client library is imported here (cold start of every verifying service).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
from jwt.algorithms import ECAlgorithm

from shared.errors import NetraError

if TYPE_CHECKING:
    from shared.config import TokenVerifySection

ALGORITHM = "ES256"
log = logging.getLogger("tokens")


class TokenInvalid(NetraError):
    """A token that must be refused; ``reason`` is a stable code.

    Reasons: malformed, bad_algorithm, unknown_kid, bad_signature, expired, not_yet_valid, wrong_audience,
    wrong_issuer, missing_claim.
    """

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


class KeySetUnavailable(NetraError):
    """The published key set could not be fetched (auth not reachable yet).

    ``url`` is where it was fetched from (None for an in-process source, or when the URL itself could not be
    found); the failure that caused it is ``__cause__``. Both are for logs and debugging: the message, which
    callers may log, names only the failure's type, and public answers say neither.
    """

    def __init__(self, message: str, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


def public_key_from_jwk(jwk: dict[str, Any]) -> Any:
    """An EC P-256 public key from its JWK; ValueError for anything else (other key types cannot sneak in).
    PyJWT checks the coordinates (length, point on the curve)."""
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256" or jwk.get("alg", ALGORITHM) != ALGORITHM:
        raise ValueError("not an ES256 key")
    try:
        return ECAlgorithm.from_jwk(jwk)
    except jwt.InvalidKeyError as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class Claims:
    sub: str
    email: str
    permissions: list[str]
    exp: int
    iat: int
    jti: str
    kid: str
    sid: str | None = None
    plan: str | None = None


class TokenVerifier:
    """Verifies access tokens against auth's JWKS.

    - The algorithm is pinned to ES256 before any key is looked at (no ``none``, no HS256-with-public-key).
    - Keys are cached; an unknown ``kid`` triggers a refetch at most once per ``min_refresh_interval_s``
      (a rotated-in key is picked up on first sight, a flood of made-up kids costs one fetch per interval).
    - Fetches are single-flight: N concurrent first verifications share one fetch (scenario 22).
    - The first fetch retries with backoff for ``fetch_budget_s`` while auth is unreachable (scenario 9),
      then raises :class:`KeySetUnavailable` (a 503 for the caller); concurrent waiters fail fast instead
      of queueing one full budget each, and wait at most ``fetch_timeout_s`` for a fetch in flight.
    """

    def __init__(
        self,
        jwks_url: Callable[[], str],
        issuer: str,
        audience: str,
        min_refresh_interval_s: float = 30.0,
        fetch_timeout_s: float = 3.0,
        fetch_budget_s: float = 10.0,
        fetch_jwks: Callable[[], dict[str, Any]] | None = None,
        leeway_s: float = 30.0,
        always_current: bool = False,
    ) -> None:
        self._jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self.min_refresh_interval_s = min_refresh_interval_s
        self.fetch_timeout_s = fetch_timeout_s
        self.fetch_budget_s = fetch_budget_s
        self.leeway_s = leeway_s
        self._fetch_jwks = fetch_jwks or self._http_jwks
        self._local = fetch_jwks is not None
        # For a local, cheap fetch_jwks (auth verifying its own tokens): follow the keyset on every
        # verification, so a retired key stops verifying at once, not only new kids are picked up.
        self.always_current = always_current
        self._keys: dict[str, Any] = {}
        self._document: dict[str, Any] | None = None
        self._fetched_at: float | None = None
        self._failed_at: float | None = None
        self._url: str | None = None  # the last URL fetched from, for KeySetUnavailable
        self._lock = threading.Lock()
        self.fetches = 0

    def _http_jwks(self) -> dict[str, Any]:
        import httpx

        self._url = self._jwks_url()
        response = httpx.get(self._url, timeout=self.fetch_timeout_s)
        response.raise_for_status()
        return response.json()

    def _fetch(self, budget_s: float) -> None:
        try:
            if self._local:
                document = self._fetch_jwks()  # an in-process source retries on its own, if at all
            else:
                from tenacity import Retrying, stop_after_delay, wait_random_exponential

                for attempt in Retrying(
                    stop=stop_after_delay(budget_s),
                    wait=wait_random_exponential(multiplier=0.1, max=1.0),
                    reraise=True,
                ):
                    with attempt:
                        document = self._fetch_jwks()
        except Exception as exc:
            self._failed_at = time.monotonic()
            raise KeySetUnavailable(f"key set unreachable: {type(exc).__name__}", self._url) from exc
        self.fetches += 1
        self._fetched_at = time.monotonic()
        self._failed_at = None
        if document is self._document:
            return  # same keyset object (auth verifying its own tokens): keys already built
        keys = {}
        for jwk in document.get("keys", []):
            # Only EC P-256 keys are ever used: a JWKS entry of another type cannot smuggle in an algorithm.
            if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str):
                try:
                    keys[jwk["kid"]] = public_key_from_jwk(jwk)
                except (ValueError, KeyError, TypeError):
                    continue
        self._keys = keys
        self._document = document

    def warm(self) -> int:
        """Fetch now unless already fetched (a startup component calls this)."""
        with self._lock:
            if self._fetched_at is None:
                self._fetch(self.fetch_budget_s)
        return len(self._keys)

    def _key(self, kid: str) -> Any:
        if self.always_current and self._fetched_at is not None:
            document = self._fetch_jwks()
            if document is not self._document:
                with self._lock:
                    self._fetch(self.fetch_budget_s)
        key = self._keys.get(kid)
        if key is not None:
            return key
        # Wait at most one attempt's time for a fetch in flight: the startup warm-up holds it for its whole
        # budget while auth is unreachable, and a handshake or request must get its retryable answer before
        # the client gives up on it.
        if not self._lock.acquire(timeout=self.fetch_timeout_s):
            raise KeySetUnavailable("key set fetch in progress", self._url)
        try:
            key = self._keys.get(kid)
            if key is not None:
                return key
            now = time.monotonic()
            if self._fetched_at is None:
                if self._failed_at is not None and now - self._failed_at < 1.0:
                    raise KeySetUnavailable("key set unreachable (fetch failed just now)", self._url)
                self._fetch(self.fetch_budget_s)
            elif now - self._fetched_at >= self.min_refresh_interval_s:
                try:
                    self._fetch(min(self.fetch_budget_s, self.fetch_timeout_s))
                except KeySetUnavailable:
                    # Keys are cached: an unreachable auth must not turn a bad kid into a 503 storm.
                    self._fetched_at = now
                    log.warning("key set refresh failed; keeping cached keys")
        finally:
            self._lock.release()
        key = self._keys.get(kid)
        if key is None:
            raise TokenInvalid("unknown_kid", "token signed by an unknown key")
        return key

    def verify(self, token: str) -> Claims:
        """The token's claims, or TokenInvalid. Order: shape, algorithm, key, then PyJWT's signature and claims."""
        if not isinstance(token, str) or token.count(".") != 2 or len(token) > 16_384:
            raise TokenInvalid("malformed", "token is not a JWT")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenInvalid("malformed", "token is not a JWT") from None
        # Pinned before any key is looked at (no "none", no HS256 keyed with the public key); jwt.decode's
        # algorithms=[ES256] pins it a second time.
        if header.get("alg") != ALGORITHM:
            raise TokenInvalid("bad_algorithm", f"algorithm must be {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenInvalid("unknown_kid", "token has no key id")
        key = self._key(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenInvalid("expired", "token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenInvalid("not_yet_valid", "token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise TokenInvalid("wrong_audience", "token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise TokenInvalid("wrong_issuer", "token is from another issuer") from None
        except jwt.InvalidSignatureError:
            raise TokenInvalid("bad_signature", "token signature is invalid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenInvalid("missing_claim", f"token lacks the {exc.claim} claim") from None
        except jwt.PyJWTError as exc:
            raise TokenInvalid("malformed", f"token is invalid: {type(exc).__name__}") from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise TokenInvalid("missing_claim", "token sub must be a non-empty string")
        permissions = claims.get("permissions", [])
        return Claims(
            sub=claims["sub"],
            email=str(claims.get("email", "")),
            permissions=[str(p) for p in permissions] if isinstance(permissions, list) else [],
            exp=int(claims["exp"]),
            iat=int(claims["iat"]),
            jti=str(claims.get("jti", "")),
            kid=kid,
            sid=claims.get("sid") if isinstance(claims.get("sid"), str) else None,
            plan=claims.get("plan") if isinstance(claims.get("plan"), str) else None,
        )


def verifier_from_settings(settings: TokenVerifySection) -> TokenVerifier:
    """For services with a TokenVerifySection: URL from AUTH_JWKS_URL, else local discovery of auth."""

    def url() -> str:
        if settings.auth_jwks_url:
            return settings.auth_jwks_url
        from shared.discovery import lookup_url

        return lookup_url("auth", timeout_s=10) + "/.well-known/jwks.json"

    return TokenVerifier(url, settings.auth_issuer, settings.token_audience, settings.jwks_refresh_min_interval_s)
