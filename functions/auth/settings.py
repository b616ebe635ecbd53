"""Configuration of the auth function (one class; env var = field name upper-cased)."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator

from shared.config import CommonSection, DatabaseSection, dev_only_switch


def _http_url(value: str | None, example: str) -> str | None:
    if not value:
        return None
    parsed = urlparse(value)
    if parsed.scheme not in {"http", "https"} or not parsed.netloc or parsed.query or parsed.fragment:
        raise ValueError(f"must be an http(s) URL without query, e.g. {example}")
    return value.rstrip("/")


class AuthSettings(CommonSection, DatabaseSection):
    # -- identity of this service ------------------------------------------------------------------
    auth_public_url: str | None = Field(
        None,
        description="public base URL of auth, e.g. https://auth.staging.example.com (callback URL and cookie "
        "settings derive from it); locally the request's own host when unset",
    )
    auth_issuer: str = Field("netra-auth", description="the iss claim put in tokens, normally AUTH_PUBLIC_URL")
    token_audience: str = Field("netra-apex", description="the aud claim of access tokens")

    # -- tokens and keys ---------------------------------------------------------------------------------
    access_token_ttl_seconds: int = Field(
        900, ge=60, le=86_400, description="access token lifetime in seconds, 60-86400"
    )
    refresh_token_ttl_seconds: int = Field(
        2_592_000, ge=3600, le=31_536_000, description="refresh token lifetime in seconds, 3600-31536000"
    )
    token_signing_keyset: SecretStr | None = Field(
        None, description='signing keyset JSON {"active_kid", "keys": [...]}; locally generated into .local/ when unset'
    )
    token_keyset_secret: str | None = Field(
        None, description="Secret Manager secret projects/P/secrets/NAME holding the keyset (read latest, TTL cached)"
    )
    token_keyset_refresh_seconds: float = Field(
        60.0, gt=0, le=3600, description="seconds between two reads of the keyset secret (rotation pick-up delay)"
    )
    token_key_publish_lead_seconds: float = Field(
        120.0,
        ge=0,
        le=86_400,
        description="seconds a new key is published in the JWKS before it signs (> JWKS max-age and the "
        "verifiers' refresh interval)",
    )
    jwks_max_age_seconds: int = Field(60, ge=0, le=3600, description="Cache-Control max-age of the JWKS, seconds")

    # -- one-time artefacts -------------------------------------------------------------------------------
    oauth_state_ttl_seconds: int = Field(600, ge=60, le=3600, description="sign-in state lifetime, seconds")
    auth_code_ttl_seconds: int = Field(60, ge=5, le=300, description="one-time code lifetime, seconds")
    ws_ticket_ttl_seconds: int = Field(60, ge=5, le=300, description="WebSocket ticket lifetime, seconds")

    # -- switches and limits --------------------------------------------------------------------------
    dev_login_enabled: bool = dev_only_switch("true to enable POST /auth/dev/login (development and test only)")
    rate_limit_per_minute: int = Field(
        60, ge=1, description="login, token and refresh requests per client IP per minute (shared by instances)"
    )
    validate_rate_limit_per_minute: int = Field(
        1200, ge=1, description="/auth/validate requests per client IP per minute (shared by instances)"
    )
    trusted_proxy_hops: int = Field(
        1,
        ge=0,
        le=5,
        description="proxies in front of auth that append to X-Forwarded-For: 1 on Cloud Run, 2 behind an "
        "external load balancer, 0 to use the peer address",
    )

    # -- Google (OpenID Connect) ---------------------------------------------------------------------
    google_client_id: str | None = Field(None, description="OAuth client id; Google sign-in is on when set")
    google_client_secret: SecretStr | None = Field(None, description="OAuth client secret of GOOGLE_CLIENT_ID")
    google_issuer: str = Field(
        "https://accounts.google.com", description="OpenID issuer, e.g. https://accounts.google.com"
    )
    google_discovery_url: str | None = Field(
        None, description="discovery document URL; default GOOGLE_ISSUER + /.well-known/openid-configuration"
    )

    # -- GitHub (OAuth 2, the narrow seam: two base URLs) --------------------------------------------
    github_client_id: str | None = Field(None, description="OAuth app client id; GitHub sign-in is on when set")
    github_client_secret: SecretStr | None = Field(None, description="OAuth app client secret of GITHUB_CLIENT_ID")
    github_oauth_base_url: str = Field(
        "https://github.com", description="base of /login/oauth/*, e.g. https://github.com"
    )
    github_api_base_url: str = Field("https://api.github.com", description="REST API base, e.g. https://api.github.com")

    provider_timeout_seconds: float = Field(
        5.0, gt=0, le=30, description="timeout of each call to a sign-in provider, seconds"
    )

    @field_validator("auth_public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        return _http_url(value, "https://auth.staging.example.com")

    @field_validator("google_discovery_url", "google_issuer", "github_oauth_base_url", "github_api_base_url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return _http_url(value, "https://accounts.google.com")

    @field_validator("google_client_id", "github_client_id", "token_keyset_secret")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value else None

    @property
    def google_enabled(self) -> bool:
        return bool(self.google_client_id)

    @property
    def github_enabled(self) -> bool:
        return bool(self.github_client_id)

    def cross_checks(self, env: Mapping[str, str]) -> list[str]:
        problems = []
        if self.google_client_id and not self.google_client_secret:
            problems.append("GOOGLE_CLIENT_SECRET: required when GOOGLE_CLIENT_ID is set")
        if self.github_client_id and not self.github_client_secret:
            problems.append("GITHUB_CLIENT_SECRET: required when GITHUB_CLIENT_ID is set")
        if self.netra_env.is_local:
            return problems
        if not (env.get("TOKEN_SIGNING_KEYSET") or env.get("TOKEN_KEYSET_SECRET")):
            problems.append(
                "TOKEN_KEYSET_SECRET: required in staging and production (Secret Manager secret holding the keyset)"
            )
        if not self.auth_public_url or not self.auth_public_url.startswith("https://"):
            problems.append("AUTH_PUBLIC_URL: required in staging and production, an https URL of auth")
        for name in ("google_issuer", "github_oauth_base_url", "github_api_base_url"):
            if not str(getattr(self, name)).startswith("https://"):
                problems.append(f"{name.upper()}: must be https in staging and production")
        return problems
