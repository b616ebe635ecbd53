"""Cold-start scenarios of auth with real processes: 19 (provider discovery unreachable at start), 20 (key
rotation through Secret Manager while tokens are live) and 23 (a freshly started second service accepts
auth's tokens)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from emulators.postgres import free_port
from emulators.secretmanager import start_secret_manager
from shared import discovery
from shared.tokens.keyset import generate_key
from shared.tokens.verify import TokenInvalid, TokenVerifier
from tests.auth.browser import FRONTEND
from tests.auth.conftest import PKCE, SignInStack
from tests.fixtures.auth import AuthService, start_auth
from tests.fixtures.oidc.launcher import start_oidc_provider

VERIFY_FUNCTION = "tests/auth/verify_function/main.py"


def eventually(check: Callable[[], Any], timeout_s: float = 60, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy (bounded; no timing is asserted)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_scenario_23_second_fresh_process_accepts_auth_tokens(
    auth_service_session: AuthService, start_function: Callable[..., Any]
) -> None:
    """Scenario 23: a token from auth is accepted by a second, freshly started process that verifies with
    shared.tokens: once configured with AUTH_JWKS_URL, once finding auth through local discovery."""
    tokens = auth_service_session.login("second@example.com")
    kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
    _, url = start_function(VERIFY_FUNCTION, "verify", {**auth_service_session.env})
    answer = httpx.get(url, headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"sub": tokens["user"]["id"], "email": "second@example.com", "kid": kid, "fetches": 1}
    tampered = tokens["access_token"][:-4] + ("AAAA" if not tokens["access_token"].endswith("AAAA") else "BBBB")
    assert httpx.get(url, headers={"Authorization": f"Bearer {tampered}"}).status_code == 401


def test_scenario_23_verifier_finds_auth_through_local_discovery(
    auth_service_session: AuthService,
    start_function: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Scenario 23: without AUTH_JWKS_URL the verifier looks auth up in .service_discovery."""
    monkeypatch.setenv("NETRA_DISCOVERY_DIR", str(tmp_path / "discovery"))  # the dir start_function passes
    port = int(auth_service_session.url.rsplit(":", 1)[1])
    discovery.write_entry("auth", "127.0.0.1", port)
    env = {"AUTH_ISSUER": auth_service_session.issuer, "TOKEN_AUDIENCE": auth_service_session.audience}
    _, url = start_function(VERIFY_FUNCTION, "verify", env)
    token = auth_service_session.login("discovered@example.com")["access_token"]
    answer = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.json()["email"] == "discovered@example.com"


def test_scenario_19_unreachable_provider_discovery(
    shared_db_url: str, firestore_emulator_host: str, tmp_path: Path
) -> None:
    """Scenario 19: Google's discovery document is unreachable at start: auth becomes ready anyway, reports
    the provider unavailable in /auth/config and /health/startup, answers /auth/login for it with 503 +
    Retry-After, keeps dev login and validation working, and picks the provider up once it appears."""
    from tests.auth.github_standin import start_github

    auth_port, provider_port = free_port(), free_port()
    github = start_github()
    service = start_auth(
        shared_db_url,
        tmp_path / "auth",
        {
            "AUTH_PUBLIC_URL": f"http://127.0.0.1:{auth_port}",
            "ALLOWED_ORIGINS": FRONTEND,
            "GOOGLE_CLIENT_ID": "netra-test-client",
            "GOOGLE_CLIENT_SECRET": "a-test-client-secret-value",
            "GOOGLE_ISSUER": f"http://127.0.0.1:{provider_port}",
            "GITHUB_CLIENT_ID": github.client_id,
            "GITHUB_CLIENT_SECRET": github.client_secret,
            "GITHUB_OAUTH_BASE_URL": github.url,
            "GITHUB_API_BASE_URL": github.url,
        },
        firestore_host=firestore_emulator_host,
        port=auth_port,
    )
    oidc = None
    try:
        url = service.url
        startup = httpx.get(f"{url}/health/startup")
        assert startup.status_code == 200, "readiness is not gated by a sign-in provider"

        def failed_attempt() -> dict[str, Any] | None:
            body = httpx.get(f"{url}/health/startup").json()
            return body if body["components"]["provider_google"]["error"] else None

        body = eventually(failed_attempt, 30, "a failed discovery attempt")
        assert body["degraded"] is True and body["components"]["provider_google"]["status"] != "up"
        # A stable code in the public answer (issue 15, finding 6); the exception's name in the log.
        assert body["components"]["provider_google"]["error"] == {"code": "unreachable"}
        assert "ConnectError" not in str(body) and "ConnectError" in service.process.output()
        providers = {p["name"]: p["available"] for p in httpx.get(f"{url}/auth/config").json()["providers"]}
        assert providers == {"google": False, "github": True}
        login = httpx.get(f"{url}/auth/login", params={"provider": "google", "return_to": f"{FRONTEND}/", **PKCE})
        assert login.status_code == 503 and login.json()["error"]["code"] == "provider_google_unavailable"
        assert int(login.headers["Retry-After"]) >= 1
        github_login = httpx.get(
            f"{url}/auth/login", params={"provider": "github", "return_to": f"{FRONTEND}/", **PKCE}
        )
        assert github_login.status_code == 302, "the other provider is unaffected"
        tokens = service.login("still-works@example.com")
        assert httpx.post(f"{url}/auth/validate", json={"token": tokens["access_token"]}).json()["valid"] is True

        oidc = start_oidc_provider(
            [f"http://127.0.0.1:{auth_port}/auth/callback"],
            client_secret="a-test-client-secret-value",
            port=provider_port,
        )

        def google_available() -> bool:
            config = httpx.get(f"{url}/auth/config").json()
            return {p["name"]: p["available"] for p in config["providers"]}["google"]

        eventually(google_available, 90, "google discovery to succeed")
        stack = SignInStack(service, oidc, github)
        code = stack.sign_in("google", "recovered@example.com").params["code"]
        assert stack.exchange(code).status_code == 200
        assert httpx.get(f"{url}/health/startup").json()["degraded"] is False
    finally:
        service.stop()
        github.stop()
        if oidc is not None:
            oidc.stop()


def _key_created(days: float) -> dict[str, str]:
    return generate_key(created_at=datetime.now(UTC) + timedelta(days=days))


def test_scenario_20_key_rotation_through_secret_manager(
    shared_db_url: str, firestore_emulator_host: str, tmp_path: Path
) -> None:
    """Scenario 20: the keyset secret gets a new version while tokens are live and without a restart: the new
    key is published before it signs, tokens of the old key keep verifying, new tokens use the new key, a
    verifier that cached the old key set fetches the new key on first sight; pruning retires the old key."""
    secret = "projects/netra-local/secrets/auth-signing-keys"
    emulator = start_secret_manager()
    old = _key_created(-3)
    emulator.add_version("netra-local", "auth-signing-keys", json.dumps({"active_kid": old["kid"], "keys": [old]}))
    service = start_auth(
        shared_db_url,
        tmp_path / "auth",
        {
            "TOKEN_KEYSET_SECRET": secret,
            "SECRET_MANAGER_EMULATOR_HOST": f"127.0.0.1:{emulator.port}",
            "TOKEN_KEYSET_REFRESH_SECONDS": "0.3",
        },
        firestore_host=firestore_emulator_host,
    )
    try:

        def kid_of(tokens: dict[str, Any]) -> str:
            return jwt.get_unverified_header(tokens["access_token"])["kid"]

        def published() -> set[str]:
            return {k["kid"] for k in httpx.get(service.jwks_url).json()["keys"]}

        def valid(token: str) -> bool:
            return httpx.post(f"{service.url}/auth/validate", json={"token": token}).json()["valid"]

        before = service.login("rotate@example.com")
        assert kid_of(before) == old["kid"]
        verifier = TokenVerifier(lambda: service.jwks_url, service.issuer, service.audience, min_refresh_interval_s=0)
        assert verifier.verify(before["access_token"]).kid == old["kid"]
        assert verifier.fetches == 1

        # Version 2: the new key is active but too new to sign (created in the future of the publish lead).
        new = _key_created(1)
        emulator.add_version(
            "netra-local", "auth-signing-keys", json.dumps({"active_kid": new["kid"], "keys": [old, new]})
        )
        eventually(lambda: new["kid"] in published(), 30, "the new key to be published")
        during = service.login("rotate@example.com")
        assert kid_of(during) == old["kid"], "published first, signing later"

        # Version 3: the new key has been published long enough: it signs.
        new["created_at"] = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        emulator.add_version(
            "netra-local", "auth-signing-keys", json.dumps({"active_kid": new["kid"], "keys": [old, new]})
        )
        after = eventually(
            lambda: (t := service.login("rotate@example.com")) and kid_of(t) == new["kid"] and t,
            30,
            "tokens signed with the new key",
        )
        assert verifier.verify(after["access_token"]).kid == new["kid"]
        assert verifier.fetches == 2, "the cached verifier fetched once, on first sight of the new kid"
        assert verifier.verify(before["access_token"]).kid == old["kid"], "old tokens verify until they expire"
        assert valid(before["access_token"]) and valid(after["access_token"])
        assert published() == {old["kid"], new["kid"]}

        # Version 4: the old key's tokens have expired, it is pruned: no longer published nor accepted.
        emulator.add_version("netra-local", "auth-signing-keys", json.dumps({"active_kid": new["kid"], "keys": [new]}))
        eventually(lambda: published() == {new["kid"]}, 30, "the old key to be retired")
        assert not valid(before["access_token"]) and valid(after["access_token"])
        with pytest.raises(TokenInvalid):
            TokenVerifier(lambda: service.jwks_url, service.issuer, service.audience).verify(before["access_token"])
    finally:
        service.stop()
        emulator.stop()
