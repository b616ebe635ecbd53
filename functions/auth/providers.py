"""Sign-in providers: Google over OpenID Connect (discovery, PKCE, ID token checks) and GitHub over OAuth 2.

Google's issuer and discovery URL are configuration, so the tests run the same code against a real OpenID
Connect provider started locally. GitHub has no discovery: its seam is two base URLs (OAuth pages and REST
API), tested against a small local stand-in that speaks the same endpoints.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from functions.auth.settings import AuthSettings
from shared.errors import NetraError

log = logging.getLogger("auth.providers")

# ID tokens must be signed asymmetrically; never HS* (the client secret is not a signing key) or none.
ID_TOKEN_ALGORITHMS = ("RS256", "ES256", "PS256")


class SignInError(NetraError):
    """A sign-in that cannot complete; ``code`` goes back to the front end in ``?error=``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ProviderIdentity:
    provider: str
    subject: str
    email: str
    name: str | None


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: BASE64URL(SHA256(verifier)) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class GoogleProvider:
    """Any OpenID Connect provider; configured with Google's issuer in the cloud."""

    name = "google"

    def __init__(self, settings: AuthSettings) -> None:
        assert settings.google_client_id and settings.google_client_secret
        self.client_id = settings.google_client_id
        self._client_secret = settings.google_client_secret
        self.issuer = settings.google_issuer
        self.discovery_url = settings.google_discovery_url or f"{self.issuer}/.well-known/openid-configuration"
        self.timeout_s = settings.provider_timeout_seconds
        self.metadata: dict[str, Any] | None = None
        self._keys: dict[str, Any] = {}
        self._keys_fetched_at: float | None = None
        self._lock = threading.Lock()

    # Startup component: unreachable discovery leaves this provider unavailable, nothing else (scenario 19).
    def discover(self) -> dict[str, Any]:
        import httpx

        response = httpx.get(self.discovery_url, timeout=self.timeout_s)
        response.raise_for_status()
        document = response.json()
        if document.get("issuer") != self.issuer:
            raise ValueError(f"discovery issuer {document.get('issuer')!r} is not GOOGLE_ISSUER {self.issuer!r}")
        missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not document.get(k)]
        if missing:
            raise ValueError(f"discovery document lacks {', '.join(missing)}")
        self.metadata = document
        return document

    def _meta(self) -> dict[str, Any]:
        if self.metadata is None:
            raise SignInError("provider_unavailable", "Google sign-in is not available yet")
        return self.metadata

    def authorize_url(self, redirect_uri: str, state: str, nonce: str, verifier: str, login_hint: str | None) -> str:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid email profile",
            "state": state,
            "nonce": nonce,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
        if login_hint:
            params["login_hint"] = login_hint
        return f"{self._meta()['authorization_endpoint']}?{urlencode(params)}"

    def exchange(self, code: str, verifier: str, redirect_uri: str, nonce: str) -> ProviderIdentity:
        import httpx

        meta = self._meta()
        try:
            response = httpx.post(
                meta["token_endpoint"],
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": redirect_uri,
                    "code_verifier": verifier,
                    "client_id": self.client_id,
                    "client_secret": self._client_secret.get_secret_value(),
                },
                headers={"Accept": "application/json"},
                timeout=self.timeout_s,
            )
        except httpx.HTTPError as exc:
            raise SignInError("provider_unreachable", f"Google token endpoint: {type(exc).__name__}") from None
        if response.status_code != 200:
            error = _provider_error(response)
            raise SignInError("code_exchange_failed", f"Google refused the code exchange ({error})")
        id_token = response.json().get("id_token")
        if not isinstance(id_token, str):
            raise SignInError("invalid_id_token", "Google's answer has no ID token")
        claims = self.verify_id_token(id_token, nonce)
        if claims.get("email_verified") is not True or not claims.get("email"):
            raise SignInError("email_not_verified", "the Google account has no verified email")
        return ProviderIdentity("google", str(claims["sub"]), str(claims["email"]), claims.get("name"))

    def _signing_key(self, kid: str | None) -> Any:
        import httpx
        import jwt

        with self._lock:
            if kid in self._keys:
                return self._keys[kid]
            recent = self._keys_fetched_at is not None and time.monotonic() - self._keys_fetched_at < 30
            if not recent:
                try:
                    response = httpx.get(self._meta()["jwks_uri"], timeout=self.timeout_s)
                    response.raise_for_status()
                    document = response.json()
                except (httpx.HTTPError, ValueError) as exc:
                    raise SignInError("provider_unreachable", f"Google keys: {type(exc).__name__}") from None
                keys = {}
                for jwk in document.get("keys", []):
                    if jwk.get("use", "sig") == "sig" and jwk.get("kid"):
                        try:
                            keys[jwk["kid"]] = jwt.PyJWK(jwk).key
                        except jwt.PyJWTError:
                            continue  # a key type we do not use
                self._keys = keys
                self._keys_fetched_at = time.monotonic()
            if kid not in self._keys:
                raise SignInError("invalid_id_token", "ID token signed by an unknown key")
            return self._keys[kid]

    def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        """Signature (provider JWKS, asymmetric algorithms only), issuer, audience, azp, expiry, nonce."""
        import jwt

        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise SignInError("invalid_id_token", "ID token is not a JWT") from None
        supported = self._meta().get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithm = header.get("alg")
        if algorithm not in ID_TOKEN_ALGORITHMS or algorithm not in supported:
            raise SignInError("invalid_id_token", "ID token algorithm is not allowed")
        key = self._signing_key(header.get("kid"))
        try:
            claims = jwt.decode(
                id_token,
                key,
                algorithms=[algorithm],
                audience=self.client_id,
                issuer=self.issuer,
                leeway=60,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise SignInError("invalid_id_token", f"ID token rejected: {type(exc).__name__}") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.client_id:
            raise SignInError("invalid_id_token", "ID token azp is not this client")
        if not isinstance(claims.get("nonce"), str) or not _equal(claims["nonce"], nonce):
            raise SignInError("invalid_id_token", "ID token nonce does not match this sign-in")
        return claims


class GitHubProvider:
    name = "github"

    def __init__(self, settings: AuthSettings) -> None:
        assert settings.github_client_id and settings.github_client_secret
        self.client_id = settings.github_client_id
        self._client_secret = settings.github_client_secret
        self.oauth_base = settings.github_oauth_base_url
        self.api_base = settings.github_api_base_url
        self.timeout_s = settings.provider_timeout_seconds

    def authorize_url(self, redirect_uri: str, state: str, nonce: str, verifier: str, login_hint: str | None) -> str:
        params = {
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": "read:user user:email",
            "state": state,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
        if login_hint:
            params["login"] = login_hint
        return f"{self.oauth_base}/login/oauth/authorize?{urlencode(params)}"

    def exchange(self, code: str, verifier: str, redirect_uri: str, nonce: str) -> ProviderIdentity:
        import httpx

        try:
            response = httpx.post(
                f"{self.oauth_base}/login/oauth/access_token",
                data={
                    "client_id": self.client_id,
                    "client_secret": self._client_secret.get_secret_value(),
                    "code": code,
                    "redirect_uri": redirect_uri,
                    "code_verifier": verifier,
                },
                headers={"Accept": "application/json"},
                timeout=self.timeout_s,
            )
            # GitHub answers 200 with {"error": ...} for a bad code.
            answer = response.json() if response.status_code == 200 else {"error": f"http_{response.status_code}"}
            access = answer.get("access_token")
            if not isinstance(access, str):
                raise SignInError(
                    "code_exchange_failed", f"GitHub refused the code exchange ({_safe(answer.get('error'))})"
                )
            api = {
                "Authorization": f"Bearer {access}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            }
            user = httpx.get(f"{self.api_base}/user", headers=api, timeout=self.timeout_s)
            emails = httpx.get(f"{self.api_base}/user/emails", headers=api, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise SignInError("provider_unreachable", f"GitHub: {type(exc).__name__}") from None
        except ValueError:
            raise SignInError("provider_error", "GitHub answered with something that is not JSON") from None
        if user.status_code != 200 or emails.status_code != 200:
            raise SignInError("provider_error", f"GitHub API answered {user.status_code}/{emails.status_code}")
        profile = user.json()
        primary = [e for e in emails.json() if isinstance(e, dict) and e.get("primary") and e.get("verified")]
        if not primary or not isinstance(profile.get("id"), int):
            raise SignInError("email_not_verified", "the GitHub account has no verified primary email")
        return ProviderIdentity(
            "github", str(profile["id"]), str(primary[0]["email"]), profile.get("name") or profile.get("login")
        )


Provider = GoogleProvider | GitHubProvider


def build_providers(settings: AuthSettings) -> dict[str, Provider]:
    providers: dict[str, Provider] = {}
    if settings.google_enabled:
        providers["google"] = GoogleProvider(settings)
    if settings.github_enabled:
        providers["github"] = GitHubProvider(settings)
    return providers


def _equal(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


def _safe(value: Any) -> str:
    """A provider's error code, reduced to characters safe to echo."""
    text = str(value or "unknown")[:64]
    return "".join(c for c in text if c.isalnum() or c in "_-.") or "unknown"


def _provider_error(response: Any) -> str:
    try:
        return _safe(json.loads(response.text).get("error"))
    except (ValueError, AttributeError):
        return f"http_{response.status_code}"
