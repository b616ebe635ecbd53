"""The auth function as a real process: dev login, refresh rotation, logout, validation, tickets, config."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import jwt
import pytest

from tests.auth.forge import forged_tokens, keyset_of
from tests.fixtures.auth import AuthService, start_auth


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_dev_login_validate_me_jwks(auth_service_session: AuthService) -> None:
    tokens = auth_service_session.login("alice@example.com")
    assert tokens["token_type"] == "Bearer" and tokens["user"]["email"] == "alice@example.com"
    assert tokens["expires_in"] == 900
    again = auth_service_session.login("Alice@Example.com")
    assert again["user"]["id"] == tokens["user"]["id"], "dev login reuses the user (emails are case-insensitive)"
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert {"iss", "aud", "sub", "email", "permissions", "iat", "exp", "jti", "sid"} <= set(claims)
    assert jwt.get_unverified_header(tokens["access_token"])["alg"] == "ES256"
    url = auth_service_session.url
    result = httpx.post(f"{url}/auth/validate", json={"token": tokens["access_token"]}).json()
    assert result["valid"] is True and result["user_id"] == tokens["user"]["id"]
    assert result["email"] == "alice@example.com" and result["permissions"] == ["user"]
    me = httpx.get(f"{url}/auth/me", headers=bearer(tokens["access_token"])).json()
    assert me["email"] == "alice@example.com" and me["identities"] == []
    missing = httpx.get(f"{url}/auth/me")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
    jwks = httpx.get(auth_service_session.jwks_url)
    assert "max-age=60" in jwks.headers["Cache-Control"]
    key = jwks.json()["keys"][0]
    assert key["alg"] == "ES256" and key["kty"] == "EC" and "d" not in key, "only public parts are published"


def test_bad_input_gets_clear_errors(auth_service_session: AuthService) -> None:
    url = auth_service_session.url
    not_json = httpx.post(f"{url}/auth/validate", content=b"{oops", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"
    invalid = httpx.post(f"{url}/auth/dev/login", json={"email": "not-an-email"})
    assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "validation_error"
    assert invalid.json()["error"]["details"][0]["field"] == "email"
    short = httpx.post(f"{url}/auth/refresh", json={"refresh_token": "x"})
    assert short.status_code == 422
    unknown = httpx.post(f"{url}/auth/refresh", json={"refresh_token": "a" * 43})
    assert unknown.status_code == 401 and unknown.json()["error"]["code"] == "invalid_refresh_token"


def test_refresh_rotates_and_reuse_revokes_family(auth_service_session: AuthService) -> None:
    url = auth_service_session.url
    first = auth_service_session.login("bob@example.com")
    second = httpx.post(f"{url}/auth/refresh", json={"refresh_token": first["refresh_token"]}).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["user"]["id"] == first["user"]["id"]
    sid = jwt.decode(second["access_token"], options={"verify_signature": False})["sid"]
    assert sid == jwt.decode(first["access_token"], options={"verify_signature": False})["sid"], "same session"
    reuse = httpx.post(f"{url}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401 and reuse.json()["error"]["code"] == "reuse_detected"
    after = httpx.post(f"{url}/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert after.status_code == 401 and after.json()["error"]["code"] == "session_revoked", "family revoked"
    other = auth_service_session.login("bob@example.com")
    fine = httpx.post(f"{url}/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert fine.status_code == 200, "other sessions of the same user are not affected"


def test_scenario_21_racing_refreshes_one_wins_deterministically(auth_service_session: AuthService) -> None:
    """Scenario 21: two refreshes of the same token race: exactly one wins, the reuse is detected and the
    family is revoked, whatever the interleaving (a Firestore transaction serialises them)."""
    url = auth_service_session.url
    for attempt in range(5):
        tokens = auth_service_session.login(f"race{attempt}@example.com")
        barrier = threading.Barrier(2)

        def refresh(_: int, tokens: dict = tokens, barrier: threading.Barrier = barrier) -> httpx.Response:
            barrier.wait()
            return httpx.post(f"{url}/auth/refresh", json={"refresh_token": tokens["refresh_token"]}, timeout=30)

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(refresh, range(2)))
        statuses = sorted(r.status_code for r in results)
        assert statuses == [200, 401], [r.text for r in results]
        loser = next(r for r in results if r.status_code == 401)
        assert loser.json()["error"]["code"] == "reuse_detected"
        winner = next(r for r in results if r.status_code == 200).json()
        revoked = httpx.post(f"{url}/auth/refresh", json={"refresh_token": winner["refresh_token"]})
        assert revoked.json()["error"]["code"] == "session_revoked"


def test_logout_by_refresh_token_and_by_bearer(auth_service_session: AuthService) -> None:
    url = auth_service_session.url
    a = auth_service_session.login("carol@example.com")
    b = auth_service_session.login("carol@example.com")
    assert httpx.post(f"{url}/auth/logout", json={"refresh_token": a["refresh_token"]}).json() == {"logged_out": True}
    gone = httpx.post(f"{url}/auth/refresh", json={"refresh_token": a["refresh_token"]})
    assert gone.json()["error"]["code"] == "session_revoked"
    assert httpx.post(f"{url}/auth/refresh", json={"refresh_token": b["refresh_token"]}).status_code == 200
    c = auth_service_session.login("carol@example.com")
    out = httpx.post(f"{url}/auth/logout", json={}, headers=bearer(c["access_token"]))
    assert out.status_code == 200
    assert httpx.post(f"{url}/auth/refresh", json={"refresh_token": c["refresh_token"]}).status_code == 401
    anonymous = httpx.post(f"{url}/auth/logout", json={})
    assert anonymous.status_code == 401
    unknown = httpx.post(f"{url}/auth/logout", json={"refresh_token": "z" * 43})
    assert unknown.json() == {"logged_out": True}, "the same answer for unknown tokens"


def test_validate_rejects_every_forged_token(auth_service_session: AuthService) -> None:
    """Security: alg none, HS256 signed with the public key, tampered payload, another key with the same kid,
    expired, wrong audience, wrong issuer and an unknown kid are all refused with their reason."""
    good = auth_service_session.login("mallory@example.com")["access_token"]
    url = auth_service_session.url
    for name, (token, reason) in forged_tokens(good, keyset_of(auth_service_session.local_dir)).items():
        result = httpx.post(f"{url}/auth/validate", json={"token": token}).json()
        assert result == {"valid": False, "reason": reason}, name
        me = httpx.get(f"{url}/auth/me", headers=bearer(token))
        assert me.status_code == 401 and me.json()["error"]["code"] == "invalid_token", name


def test_ws_ticket_is_single_use(auth_service_session: AuthService) -> None:
    url = auth_service_session.url
    token = auth_service_session.login("ticket@example.com")["access_token"]
    issued = httpx.post(f"{url}/auth/ws-ticket", headers=bearer(token)).json()
    assert issued["expires_in"] == 60
    first = httpx.post(f"{url}/auth/ws-ticket/redeem", json={"ticket": issued["ticket"]})
    assert first.status_code == 200 and first.json()["email"] == "ticket@example.com"
    second = httpx.post(f"{url}/auth/ws-ticket/redeem", json={"ticket": issued["ticket"]})
    assert second.status_code == 401 and second.json()["error"]["code"] == "invalid_ticket"
    assert httpx.post(f"{url}/auth/ws-ticket").status_code == 401, "a ticket needs a bearer token"


def test_ws_ticket_concurrent_redeems_one_wins(auth_service_session: AuthService) -> None:
    url = auth_service_session.url
    token = auth_service_session.login("ticket2@example.com")["access_token"]
    ticket = httpx.post(f"{url}/auth/ws-ticket", headers=bearer(token)).json()["ticket"]
    barrier = threading.Barrier(4)

    def redeem(_: int) -> int:
        barrier.wait()
        return httpx.post(f"{url}/auth/ws-ticket/redeem", json={"ticket": ticket}, timeout=30).status_code

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(redeem, range(4))) == [200, 401, 401, 401]


def test_config_describes_the_service(auth_service_session: AuthService) -> None:
    config = httpx.get(f"{auth_service_session.url}/auth/config").json()
    assert config["environment"] == "test" and config["dev_login"] is True
    assert config["providers"] == [] and config["issuer"] == auth_service_session.issuer
    assert config["endpoints"]["jwks"] == "/.well-known/jwks.json"


def test_scenario_27_dev_login_in_production_refuses_to_start(
    migrated_db_url: str, firestore_emulator_host: str, tmp_path
) -> None:  # noqa: ANN001
    """Scenario 27: dev login switched on in production: start-up refuses with a clear error naming it."""
    with pytest.raises(RuntimeError) as info:
        start_auth(
            migrated_db_url,
            tmp_path / "prod",
            {"NETRA_ENV": "production", "DEV_LOGIN_ENABLED": "true", "ALLOWED_ORIGINS": "https://app.example.com"},
            firestore_host=firestore_emulator_host,
            wait_path="/health/live",
        )
    assert "DEV_LOGIN_ENABLED: is a development-only switch" in str(info.value)
    assert "TOKEN_KEYSET_SECRET" in str(info.value) and "AUTH_PUBLIC_URL" in str(info.value)


def test_without_the_switch_the_dev_route_does_not_exist(
    migrated_db_url: str, firestore_emulator_host: str, tmp_path
) -> None:  # noqa: ANN001
    service = start_auth(
        migrated_db_url, tmp_path / "nodev", {"DEV_LOGIN_ENABLED": "false"}, firestore_host=firestore_emulator_host
    )
    try:
        response = httpx.post(f"{service.url}/auth/dev/login", json={})
        assert response.status_code == 404
        assert httpx.get(f"{service.url}/auth/config").json()["dev_login"] is False
    finally:
        service.stop()


def test_expired_refresh_token_and_ticket_are_refused(auth_service_session: AuthService, firestore_client) -> None:  # noqa: ANN001
    from datetime import UTC, datetime, timedelta

    from functions.auth.store import digest

    prefix = auth_service_session.firestore_prefix
    past = {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}
    url = auth_service_session.url
    tokens = auth_service_session.login("late@example.com")
    firestore_client.collection(f"{prefix}refresh_tokens").document(digest(tokens["refresh_token"])).update(past)
    late = httpx.post(f"{url}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert late.status_code == 401 and late.json()["error"]["code"] == "refresh_token_expired"
    ticket = httpx.post(f"{url}/auth/ws-ticket", headers=bearer(tokens["access_token"])).json()["ticket"]
    firestore_client.collection(f"{prefix}ws_tickets").document(digest(ticket)).update(past)
    assert httpx.post(f"{url}/auth/ws-ticket/redeem", json={"ticket": ticket}).status_code == 401
