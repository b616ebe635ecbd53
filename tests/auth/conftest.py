"""The sign-in stack: auth configured for Google (a real OpenID Connect provider run locally) and GitHub (a
local stand-in), one per test module."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from emulators.postgres import free_port
from functions.auth.providers import pkce_challenge
from tests.auth.browser import FRONTEND, Browser, Journey
from tests.auth.github_standin import GitHubStandIn, start_github
from tests.fixtures.auth import AuthService, start_auth
from tests.fixtures.oidc.launcher import OidcProvider, start_oidc_provider

# The PKCE pair a test's front end uses unless it brings its own (PKCE is required: issue 15, finding 7).
VERIFIER = secrets.token_urlsafe(48)
CHALLENGE = pkce_challenge(VERIFIER)
PKCE = {"code_challenge": CHALLENGE, "code_challenge_method": "S256"}


@dataclass
class SignInStack:
    auth: AuthService
    oidc: OidcProvider
    github: GitHubStandIn

    def login_url(
        self, provider: str, email: str, return_to: str = f"{FRONTEND}/signed-in", pkce: bool = True, **extra: str
    ) -> str:
        query = {"provider": provider, "return_to": return_to, "login_hint": email, **(PKCE if pkce else {}), **extra}
        return f"{self.auth.url}/auth/login?{urlencode(query)}"

    def sign_in(self, provider: str, email: str, browser: Browser | None = None, **extra: str) -> Journey:
        own = browser is None
        browser = browser or Browser()
        try:
            return browser.go(self.login_url(provider, email, **extra))
        finally:
            if own:
                browser.close()

    def exchange(self, code: str, verifier: str | None = VERIFIER) -> httpx.Response:
        body = {"code": code, **({"code_verifier": verifier} if verifier else {})}
        return httpx.post(f"{self.auth.url}/auth/token", json=body, timeout=30)


def start_signin_stack(
    db_url: str, firestore_host: str, local_dir: Path, extra: dict[str, str] | None = None
) -> SignInStack:
    port = free_port()
    oidc = start_oidc_provider([f"http://127.0.0.1:{port}/auth/callback"])
    github = start_github()
    try:
        auth = start_auth(
            db_url,
            local_dir,
            {
                "AUTH_PUBLIC_URL": f"http://127.0.0.1:{port}",
                "ALLOWED_ORIGINS": FRONTEND,
                "GOOGLE_CLIENT_ID": oidc.client_id,
                "GOOGLE_CLIENT_SECRET": oidc.client_secret,
                "GOOGLE_ISSUER": oidc.issuer,
                "GITHUB_CLIENT_ID": github.client_id,
                "GITHUB_CLIENT_SECRET": github.client_secret,
                "GITHUB_OAUTH_BASE_URL": github.url,
                "GITHUB_API_BASE_URL": github.url,
                **(extra or {}),
            },
            firestore_host=firestore_host,
            port=port,
        )
    except BaseException:
        oidc.stop()
        github.stop()
        raise
    return SignInStack(auth, oidc, github)


def stop_signin_stack(stack: SignInStack) -> None:
    stack.auth.stop()
    stack.oidc.stop()
    stack.github.stop()


@pytest.fixture(scope="module")
def signin(
    shared_db_url: str, firestore_emulator_host: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SignInStack]:
    stack = start_signin_stack(shared_db_url, firestore_emulator_host, tmp_path_factory.mktemp("signin"))
    yield stack
    stop_signin_stack(stack)
