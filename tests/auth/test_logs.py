"""No secret in any log line: a full sign-in (both providers), token exchange, refresh, reuse, logout, tickets
and bad tokens, with auth logging at DEBUG; then every secret value seen is searched for in its output."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.auth.browser import Browser
from tests.auth.conftest import SignInStack, start_signin_stack, stop_signin_stack
from tests.auth.test_signin import pkce_pair


@pytest.fixture
def debug_stack(shared_db_url: str, firestore_emulator_host: str, tmp_path: Path) -> Iterator[SignInStack]:
    stack = start_signin_stack(
        shared_db_url, firestore_emulator_host, tmp_path / "auth", {"LOG_LEVEL": "DEBUG", "LOG_FORMAT": "json"}
    )
    yield stack
    stop_signin_stack(stack)


def test_no_token_code_or_secret_in_any_log_line(debug_stack: SignInStack) -> None:
    stack = debug_stack
    url = stack.auth.url
    secrets: dict[str, str] = {
        "google client secret": stack.oidc.client_secret,
        "github client secret": stack.github.client_secret,
    }
    keyset = json.loads((stack.auth.local_dir / "auth_keyset.json").read_text())
    for key in keyset["keys"]:
        secrets[f"private key {key['kid']}"] = key["private_key_pem"].splitlines()[1]

    for provider in ("google", "github"):
        verifier, challenge = pkce_pair()
        browser = Browser()
        journey = browser.go(
            stack.login_url(
                provider, f"logs-{provider}@example.com", code_challenge=challenge, code_challenge_method="S256"
            )
        )
        authorize = parse_qs(urlsplit(journey.hops[1]).query)
        callback = parse_qs(urlsplit(journey.hop_to("/auth/callback")).query)
        secrets[f"{provider} state"] = authorize["state"][0]
        secrets[f"{provider} provider code"] = callback["code"][0]
        secrets[f"{provider} one-time code"] = journey.params["code"]
        secrets[f"{provider} front-end verifier"] = verifier
        if "nonce" in authorize:
            secrets[f"{provider} nonce"] = authorize["nonce"][0]
        for cookie in browser.client.cookies.jar:
            if cookie.name.startswith("netra_signin_") and cookie.value:
                secrets[f"{provider} binding cookie"] = cookie.value
        browser.close()
        pair = stack.exchange(journey.params["code"], verifier).json()
        refreshed = httpx.post(f"{url}/auth/refresh", json={"refresh_token": pair["refresh_token"]}).json()
        reuse = httpx.post(f"{url}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert reuse.json()["error"]["code"] == "reuse_detected"
        ticket = httpx.post(
            f"{url}/auth/ws-ticket", headers={"Authorization": f"Bearer {refreshed['access_token']}"}
        ).json()["ticket"]
        httpx.post(f"{url}/auth/ws-ticket/redeem", json={"ticket": ticket})
        httpx.post(f"{url}/auth/ws-ticket/redeem", json={"ticket": ticket})
        httpx.post(f"{url}/auth/validate", json={"token": pair["access_token"][:-5] + "AAAAA"})
        httpx.post(f"{url}/auth/logout", json={"refresh_token": refreshed["refresh_token"]})
        httpx.post(f"{url}/auth/token", json={"code": journey.params["code"]})  # replay, logged as refused
        for name, value in [
            ("access token", pair["access_token"]),
            ("refresh token", pair["refresh_token"]),
            ("rotated access token", refreshed["access_token"]),
            ("rotated refresh token", refreshed["refresh_token"]),
            ("ws ticket", ticket),
        ]:
            secrets[f"{provider} {name}"] = value
        for token in (pair["access_token"], refreshed["access_token"]):
            secrets[f"{provider} token signature"] = token.rsplit(".", 1)[1]
    for access in stack.github.tokens:
        secrets["github access token"] = access

    time.sleep(1.0)  # let the last log lines through the pipe
    output = stack.auth.process.output()
    assert "sign-in completed" in output and "reuse detected" in output, "the flow was logged at all"
    assert len(output.splitlines()) > 15
    leaked = [name for name, value in secrets.items() if value and value in output]
    assert not leaked, f"found in auth's logs: {leaked}"
