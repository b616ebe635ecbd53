"""Configuration of the auth function."""

from __future__ import annotations

from pydantic import Field, SecretStr

from shared.config import DatabaseSection, ServiceSettings, dev_only_switch


class AuthSettings(ServiceSettings, DatabaseSection):
    auth_public_url: str = Field(
        "http://127.0.0.1", description="public base URL of auth, e.g. https://auth.staging.example.com"
    )
    auth_issuer: str = Field("netra-auth", description="the iss claim put in tokens, normally AUTH_PUBLIC_URL")
    token_audience: str = Field("netra-apex", description="the aud claim of access tokens")
    access_token_ttl_seconds: int = Field(
        900, ge=60, le=86_400, description="access token lifetime in seconds, 60-86400"
    )
    refresh_token_ttl_seconds: int = Field(2_592_000, ge=3600, description="refresh token lifetime in seconds")
    token_signing_keyset: SecretStr | None = Field(
        None, description='signing keyset JSON {"active_kid", "keys": [...]}; locally generated into .local/ when unset'
    )
    token_keyset_secret: str | None = Field(
        None, description="Secret Manager secret projects/P/secrets/NAME holding the keyset (read latest, TTL cached)"
    )
    dev_login_enabled: bool = dev_only_switch("true to enable POST /auth/dev/login (development and test only)")
    rate_limit_per_minute: int = Field(
        120, ge=1, description="requests per client IP per minute on login/refresh/validate"
    )

    def cross_checks(self, env: dict[str, str]) -> list[str]:
        if self.netra_env.is_local:
            return []
        if not (env.get("TOKEN_SIGNING_KEYSET") or env.get("TOKEN_KEYSET_SECRET")):
            return [
                "TOKEN_KEYSET_SECRET: required in staging and production (Secret Manager secret holding the keyset)"
            ]
        return []
