"""Sign-in end to end: auth -> a real OpenID Connect provider (Google's stand-in, npm oidc-provider) or the
GitHub stand-in -> /auth/callback -> front end with a one-time code -> POST /auth/token -> tokens."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from functions.auth.store import digest
from tests.auth.browser import FRONTEND, Browser
from tests.auth.conftest import CHALLENGE, SignInStack


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def me(stack: SignInStack, access_token: str) -> dict:
    return httpx.get(f"{stack.auth.url}/auth/me", headers=bearer(access_token)).json()


def test_google_sign_in_end_to_end(signin: SignInStack) -> None:
    journey = signin.sign_in("google", "grace@example.com")
    authorize = parse_qs(urlsplit(journey.hops[1]).query)
    assert journey.hops[1].startswith(signin.oidc.issuer)
    assert authorize["code_challenge_method"] == ["S256"] and len(authorize["code_challenge"][0]) == 43
    assert authorize["nonce"][0] and authorize["state"][0] and authorize["scope"] == ["openid email profile"]
    assert authorize["redirect_uri"] == [f"{signin.auth.url}/auth/callback"]
    assert journey.final.startswith(f"{FRONTEND}/signed-in?")
    assert set(journey.params) == {"code"}, "the front end gets a one-time code, never tokens"
    tokens = signin.exchange(journey.params["code"])
    assert tokens.status_code == 200, tokens.text
    pair = tokens.json()
    assert pair["user"]["email"] == "grace@example.com" and pair["token_type"] == "Bearer"
    profile = me(signin, pair["access_token"])
    assert profile["identities"] == [{"provider": "google", "email": "grace@example.com"}]
    valid = httpx.post(f"{signin.auth.url}/auth/validate", json={"token": pair["access_token"]}).json()
    assert valid["valid"] is True and valid["user_id"] == pair["user"]["id"]
    refreshed = httpx.post(f"{signin.auth.url}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200


def test_github_sign_in_links_to_the_same_user_by_verified_email(signin: SignInStack) -> None:
    google = signin.exchange(signin.sign_in("google", "linus@example.com").params["code"]).json()
    journey = signin.sign_in("github", "linus@example.com")
    authorize = parse_qs(urlsplit(journey.hops[1]).query)
    assert journey.hops[1].startswith(f"{signin.github.url}/login/oauth/authorize")
    assert authorize["code_challenge_method"] == ["S256"] and authorize["state"][0]
    github = signin.exchange(journey.params["code"]).json()
    assert github["user"]["id"] == google["user"]["id"], "one user per verified email"
    providers = sorted(i["provider"] for i in me(signin, github["access_token"])["identities"])
    assert providers == ["github", "google"]
    again = signin.exchange(signin.sign_in("github", "linus@example.com").params["code"]).json()
    assert again["user"]["id"] == google["user"]["id"], "a known identity signs in to its user"


@pytest.mark.parametrize("provider", ["google", "github"])
def test_unverified_email_is_refused(signin: SignInStack, provider: str) -> None:
    journey = signin.sign_in(provider, "eve+unverified@example.com")
    assert journey.params == {"error": "email_not_verified"}


def test_provider_denial_goes_back_to_the_front_end_with_an_error(signin: SignInStack) -> None:
    browser = Browser()
    try:
        journey = browser.go(signin.login_url("google", "dan@example.com"), stop_at="/auth/callback")
        state = parse_qs(urlsplit(journey.final).query)["state"][0]
        denied = browser.go(f"{signin.auth.url}/auth/callback?error=access_denied&state={state}")
        assert denied.params == {"error": "access_denied"}
    finally:
        browser.close()


def test_replayed_state_is_refused(signin: SignInStack) -> None:
    """Security: a callback (state + provider code) replayed after use is refused."""
    browser = Browser()
    try:
        stopped = browser.go(signin.login_url("google", "replay@example.com"), stop_at="/auth/callback")
        callback = stopped.final
        # The binding cookie is replayed too (the same browser, or a thief who has both): the refusal must come
        # from the state being single use, not from the cookie that the first callback cleared.
        binding = {c.name: c.value for c in browser.client.cookies.jar if c.name.startswith("netra_signin_")}
        assert binding, "the login set a binding cookie"
        first = httpx.get(callback, cookies=binding)
        assert first.status_code == 302 and "code=" in first.headers["Location"]
        replay = httpx.get(callback, cookies=binding)
        assert replay.status_code == 400 and replay.json()["error"]["code"] == "invalid_state"
        assert "already used" in replay.json()["error"]["message"]
        forged = browser.client.get(f"{signin.auth.url}/auth/callback?code=abc&state={secrets.token_urlsafe(32)}")
        assert forged.status_code == 400 and forged.json()["error"]["code"] == "invalid_state"
        missing = browser.client.get(f"{signin.auth.url}/auth/callback?code=abc")
        assert missing.status_code == 400 and missing.json()["error"]["code"] == "invalid_state"
    finally:
        browser.close()


def test_state_is_bound_to_the_browser_that_started(signin: SignInStack) -> None:
    """Login CSRF: a callback URL carried to another browser (without the sign-in cookie) is refused."""
    starter, victim = Browser(), Browser()
    try:
        journey = starter.go(signin.login_url("google", "attacker@example.com"), stop_at="/auth/callback")
        response = victim.client.get(journey.final)
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_state"
        assert "another browser" in response.json()["error"]["message"]
    finally:
        starter.close()
        victim.close()


def test_replayed_one_time_code_is_refused(signin: SignInStack) -> None:
    """Security: the one-time code works once."""
    code = signin.sign_in("google", "once@example.com").params["code"]
    assert signin.exchange(code).status_code == 200
    again = signin.exchange(code)
    assert again.status_code == 400 and again.json()["error"]["code"] == "invalid_grant"


def test_front_end_pkce_wrong_verifier_is_refused(signin: SignInStack) -> None:
    """Security: a code issued for a code_challenge needs the matching code_verifier; a wrong verifier burns
    the code, a missing one is refused before the code is looked at (PKCE is required)."""
    verifier, challenge = pkce_pair()
    code = signin.sign_in("google", "pkce@example.com", code_challenge=challenge, code_challenge_method="S256").params[
        "code"
    ]
    refused = signin.exchange(code, pkce_pair()[0])
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_grant"
    assert signin.exchange(code, verifier).status_code == 400, "the code was burnt by the wrong attempt"
    code = signin.sign_in("google", "pkce@example.com", code_challenge=challenge, code_challenge_method="S256").params[
        "code"
    ]
    missing = signin.exchange(code, None)
    assert missing.status_code == 422 and missing.json()["error"]["details"][0]["field"] == "code_verifier"
    assert signin.exchange(code, verifier).status_code == 200


def test_pkce_is_required_for_the_public_client(signin: SignInStack) -> None:
    """Issue 15, finding 7: every front end of auth is a public client (a page in a browser), so a sign-in
    without a code_challenge is refused at /auth/login, and /auth/token needs the code_verifier."""
    for missing in ({}, {"code_challenge": CHALLENGE}, {"code_challenge_method": "S256"}):
        url = signin.login_url("google", "nopkce@example.com", pkce=False, **missing)
        response = httpx.get(url, follow_redirects=False)
        assert response.status_code == 422, (missing, response.status_code)
        fields = {d["field"] for d in response.json()["error"]["details"]}
        assert fields & {"code_challenge", "code_challenge_method"}, fields
    no_verifier = httpx.post(f"{signin.auth.url}/auth/token", json={"code": "c" * 43})
    assert no_verifier.status_code == 422


def test_provider_refuses_a_wrong_pkce_verifier(signin: SignInStack, firestore_client) -> None:  # noqa: ANN001
    """Security: the provider enforces auth's PKCE: with the stored verifier swapped for another one, the code
    exchange fails and the front end gets an error, not tokens."""
    browser = Browser()
    try:
        journey = browser.go(signin.login_url("google", "pkce2@example.com"), stop_at="/auth/callback")
        state = parse_qs(urlsplit(journey.final).query)["state"][0]
        doc = firestore_client.collection(f"{signin.auth.firestore_prefix}oauth_states").document(digest(state))
        doc.update({"code_verifier": secrets.token_urlsafe(48)})
        result = browser.go(journey.final)
        assert result.params == {"error": "code_exchange_failed"}
    finally:
        browser.close()


@pytest.mark.parametrize(
    "return_to",
    [
        "https://evil.example/",
        "http://app.test.local:8081/signed-in",
        "http://app.test.local:8080@evil.example/",
        "http://evil.example\\@app.test.local:8080/",
        "//evil.example/",
        "/relative",
        "javascript:alert(1)//app.test.local:8080",
        "http://app.test.local.evil.example:8080/",
        "http://app.test.local:8080 /x",
        # Issue 15, finding 5: fullwidth solidus / commercial at made urlsplit raise (a 500 before).
        "http://app.test.local:8080\uff0f@evil.example/",
        "http://app.test.local:8080\uff20evil.example/",
        "http://app.test.local:99999/",
    ],
)
def test_return_to_outside_the_allow_list_is_refused(signin: SignInStack, return_to: str) -> None:
    """Security: no open redirect through return_to."""
    response = httpx.get(signin.login_url("google", "x@example.com", return_to=return_to))
    assert response.status_code == 400, response.headers.get("Location")
    assert response.json()["error"]["code"] == "invalid_return_to"


def test_allowed_return_to_keeps_its_own_query(signin: SignInStack) -> None:
    journey = signin.sign_in("google", "query@example.com", return_to=f"{FRONTEND}/after?tab=2&code=old")
    assert journey.params["tab"] == "2" and journey.params["code"] != "old"


def test_login_input_errors(signin: SignInStack) -> None:
    unknown = httpx.get(f"{signin.auth.url}/auth/login?provider=myspace&return_to={FRONTEND}/")
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "validation_error"
    plain = httpx.get(
        signin.login_url("google", "x@example.com", code_challenge="a" * 43, code_challenge_method="plain")
    )
    assert plain.status_code == 422
    token = httpx.post(f"{signin.auth.url}/auth/token", json={"code": "short"})
    assert token.status_code == 422


def test_expired_one_time_code_and_state_are_refused(signin: SignInStack, firestore_client) -> None:  # noqa: ANN001
    """Emulators never delete expired documents (and Firestore's TTL deletion is lazy): expiry is checked."""
    from datetime import UTC, datetime, timedelta

    past = {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}
    code = signin.sign_in("google", "late@example.com").params["code"]
    firestore_client.collection(f"{signin.auth.firestore_prefix}auth_codes").document(digest(code)).update(past)
    late = signin.exchange(code)
    assert late.status_code == 400 and late.json()["error"]["code"] == "invalid_grant"
    browser = Browser()
    try:
        journey = browser.go(signin.login_url("google", "late@example.com"), stop_at="/auth/callback")
        state = parse_qs(urlsplit(journey.final).query)["state"][0]
        firestore_client.collection(f"{signin.auth.firestore_prefix}oauth_states").document(digest(state)).update(past)
        response = browser.client.get(journey.final)
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_state"
    finally:
        browser.close()
