"""The auth function as a real process: dev login, refresh rotation, validation, security checks."""

from __future__ import annotations

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import pytest

from emulators.postgres import free_port
from shared.tokens import (
    TokenInvalid,
    TokenVerifier,
    generate_key,
    generate_keyset,
    jwks_from_keyset,
    sign_access_token,
)
from tests.fixtures.auth import AUDIENCE, ISSUER, AuthService, start_auth


def verifier_for(service: AuthService) -> TokenVerifier:
    return TokenVerifier(lambda: service.jwks_url, ISSUER, AUDIENCE)


def test_dev_login_validate_me(auth_service_session: AuthService) -> None:
    tokens = auth_service_session.login("alice@example.com")
    assert tokens["token_type"] == "Bearer" and tokens["user"]["email"] == "alice@example.com"
    again = auth_service_session.login("alice@example.com")
    assert again["user"]["id"] == tokens["user"]["id"], "dev login reuses the user"
    url = auth_service_session.url
    result = httpx.post(f"{url}/auth/validate", json={"token": tokens["access_token"]}).json()
    assert result["valid"] is True and result["user_id"] == tokens["user"]["id"]
    me = httpx.get(f"{url}/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
    assert me["email"] == "alice@example.com"
    assert httpx.get(f"{url}/auth/me").status_code == 401
    jwks = httpx.get(auth_service_session.jwks_url)
    assert "max-age" in jwks.headers["Cache-Control"] and jwks.json()["keys"][0]["alg"] == "ES256"


def test_refresh_rotates_and_reuse_revokes_family(auth_service_session: AuthService) -> None:
    url = auth_service_session.url
    first = auth_service_session.login("bob@example.com")
    second = httpx.post(f"{url}/auth/refresh", json={"refresh_token": first["refresh_token"]}).json()
    assert second["refresh_token"] != first["refresh_token"]
    reuse = httpx.post(f"{url}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401 and reuse.json()["error"]["code"] == "reuse_detected"
    after = httpx.post(f"{url}/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert after.status_code == 401 and after.json()["error"]["code"] == "session_revoked", "family revoked"


def test_scenario_21_racing_refreshes_one_wins_deterministically(auth_service_session: AuthService) -> None:
    """Scenario 21: two refreshes of the same token race: exactly one wins, the reuse is detected and the
    family is revoked, whatever the interleaving."""
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


def _forge(claims: dict, header: dict, signing_input_key: bytes | None, alg: str) -> str:
    """Hand-made tokens: PyJWT itself refuses to build these attacks."""
    import hashlib
    import hmac

    def enc(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{enc(json.dumps({**header, 'alg': alg}).encode())}.{enc(json.dumps(claims).encode())}"
    if alg == "none":
        return signing_input + "."
    signature = hmac.new(signing_input_key or b"", signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{enc(signature)}"


def test_security_rejections(auth_service_session: AuthService) -> None:
    tokens = auth_service_session.login("mallory@example.com")
    good = tokens["access_token"]
    header = jwt.get_unverified_header(good)
    claims = jwt.decode(good, options={"verify_signature": False})
    verifier = verifier_for(auth_service_session)
    assert verifier.verify(good).email == "mallory@example.com"
    public_pem = None
    from jwt.algorithms import ECAlgorithm

    key = ECAlgorithm.from_jwk(json.dumps(httpx.get(auth_service_session.jwks_url).json()["keys"][0]))
    from cryptography.hazmat.primitives import serialization

    public_pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    other_keyset = generate_keyset()
    other_keyset["keys"][0]["kid"] = other_keyset["active_kid"] = header["kid"]
    cases = {
        "alg none": (_forge(claims, header, None, "none"), "bad_algorithm"),
        "HS256 with the public key": (_forge(claims, header, public_pem, "HS256"), "bad_algorithm"),
        "tampered payload": (
            good.split(".")[0]
            + "."
            + base64.urlsafe_b64encode(json.dumps({**claims, "sub": "someone-else"}).encode()).rstrip(b"=").decode()
            + "."
            + good.split(".")[2],
            "bad_signature",
        ),
        "signed by another key with the same kid": (
            sign_access_token(
                other_keyset, user_id="x", email="x", permissions=[], issuer=ISSUER, audience=AUDIENCE, ttl_s=60
            )[0],
            "bad_signature",
        ),
    }
    for name, (token, reason) in cases.items():
        with pytest.raises(TokenInvalid) as info:
            verifier.verify(token)
        assert info.value.reason == reason, name
        result = httpx.post(f"{auth_service_session.url}/auth/validate", json={"token": token}).json()
        assert result == {"valid": False, "reason": reason}, name


def test_expired_wrong_audience_wrong_issuer_unknown_kid() -> None:
    keyset = generate_keyset()
    jwks = jwks_from_keyset(keyset)
    server, url = serve_jwks(lambda: jwks)
    try:
        verifier = TokenVerifier(lambda: url, "iss-a", "aud-a", min_refresh_interval_s=60)
        sign = lambda **kw: sign_access_token(  # noqa: E731
            keyset,
            user_id="u",
            email="e",
            permissions=[],  # noqa: E731
            **{"issuer": "iss-a", "audience": "aud-a", "ttl_s": 60, **kw},
        )[0]
        assert verifier.verify(sign()).sub == "u"
        for token, reason in [
            (sign(ttl_s=-120), "expired"),
            (sign(audience="aud-b"), "wrong_audience"),
            (sign(issuer="iss-b"), "wrong_issuer"),
        ]:
            with pytest.raises(TokenInvalid) as info:
                verifier.verify(token)
            assert info.value.reason == reason
        stranger = {"active_kid": "zzz", "keys": [generate_key("zzz")]}
        token = sign_access_token(
            stranger, user_id="u", email="e", permissions=[], issuer="iss-a", audience="aud-a", ttl_s=60
        )[0]
        with pytest.raises(TokenInvalid) as info:
            verifier.verify(token)
        assert info.value.reason == "unknown_kid"
    finally:
        server.shutdown()


class Counting:
    hits = 0


def serve_jwks(document, delay_s: float = 0.0, available=lambda: True):  # noqa: ANN001, ANN201
    counter = Counting()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            counter.hits += 1
            if not available():
                self.send_response(503)
                self.end_headers()
                return
            time.sleep(delay_s)
            body = json.dumps(document()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    server.counter = counter  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/jwks"


def test_scenario_22_first_verifications_fetch_the_key_set_once() -> None:
    """Scenario 22: a fresh instance verifying its first tokens fetches the key set once, not per request."""
    keyset = generate_keyset()
    server, url = serve_jwks(lambda: jwks_from_keyset(keyset), delay_s=0.2)
    try:
        verifier = TokenVerifier(lambda: url, "i", "a")
        token = sign_access_token(keyset, user_id="u", email="e", permissions=[], issuer="i", audience="a", ttl_s=60)[0]
        barrier = threading.Barrier(50)

        def first(_: int) -> str:
            barrier.wait()
            return verifier.verify(token).sub

        with ThreadPoolExecutor(50) as pool:
            assert list(pool.map(first, range(50))) == ["u"] * 50
        assert server.counter.hits == 1  # type: ignore[attr-defined]
    finally:
        server.shutdown()


def test_scenario_9_verifier_waits_for_key_set_then_serves() -> None:
    """Scenario 9: the verifier starts before the key set is reachable: it retries, then serves."""
    keyset = generate_keyset()
    up_at = time.monotonic() + 1.5
    server, url = serve_jwks(lambda: jwks_from_keyset(keyset), available=lambda: time.monotonic() > up_at)
    try:
        verifier = TokenVerifier(lambda: url, "i", "a", fetch_budget_s=10)
        token = sign_access_token(keyset, user_id="u", email="e", permissions=[], issuer="i", audience="a", ttl_s=60)[0]
        assert verifier.verify(token).sub == "u"
        assert server.counter.hits > 1, "it had to retry"  # type: ignore[attr-defined]
    finally:
        server.shutdown()


def test_scenario_20_rotation_tokens_of_either_key_verify() -> None:
    """Scenario 20: the signing key rotates while instances start: tokens of the old and the new key verify;
    a verifier that cached the old key set picks up the new key on first sight of its kid."""
    keyset = generate_keyset()
    current = {"jwks": jwks_from_keyset(keyset)}
    server, url = serve_jwks(lambda: current["jwks"])
    try:
        verifier = TokenVerifier(lambda: url, "i", "a", min_refresh_interval_s=0)
        sign = lambda ks: sign_access_token(  # noqa: E731
            ks,
            user_id="u",
            email="e",
            permissions=[],
            issuer="i",
            audience="a",  # noqa: E731
            ttl_s=60,
        )[0]
        old_token = sign(keyset)
        assert verifier.verify(old_token).kid == keyset["active_kid"]
        new_key = generate_key()
        keyset["keys"].append(new_key)  # published first...
        current["jwks"] = jwks_from_keyset(keyset)
        keyset["active_kid"] = new_key["kid"]  # ...then signs
        new_token = sign(keyset)
        assert verifier.verify(new_token).kid == new_key["kid"]
        assert verifier.verify(old_token).kid != new_key["kid"], "old tokens still verify until they expire"
    finally:
        server.shutdown()


def test_ws_ticket_is_single_use(auth_service_session: AuthService) -> None:
    url = auth_service_session.url
    token = auth_service_session.login("ticket@example.com")["access_token"]
    ticket = httpx.post(f"{url}/auth/ws-ticket", headers={"Authorization": f"Bearer {token}"}).json()["ticket"]
    first = httpx.post(f"{url}/auth/ws-ticket/redeem", json={"ticket": ticket})
    assert first.status_code == 200 and first.json()["email"] == "ticket@example.com"
    second = httpx.post(f"{url}/auth/ws-ticket/redeem", json={"ticket": ticket})
    assert second.status_code == 401 and second.json()["error"]["code"] == "invalid_ticket"


def test_rate_limit_answers_429_with_retry_after(migrated_db_url: str, tmp_path) -> None:
    service = start_auth(migrated_db_url, tmp_path / "rl", {"RATE_LIMIT_PER_MINUTE": "5"})
    try:
        statuses = [httpx.post(f"{service.url}/auth/validate", json={"token": "x"}) for _ in range(8)]
        limited = [r for r in statuses if r.status_code == 429]
        assert limited and int(limited[0].headers["Retry-After"]) >= 1
        assert limited[0].json()["error"]["code"] == "rate_limited"
    finally:
        service.process.stop()


def test_scenario_27_dev_login_in_production_refuses_to_start(migrated_db_url: str, tmp_path) -> None:
    """Scenario 27: dev login switched on in production: start-up refuses with a clear error."""
    with pytest.raises(RuntimeError) as info:
        start_auth(
            migrated_db_url,
            tmp_path / "prod",
            {"NETRA_ENV": "production", "DEV_LOGIN_ENABLED": "true", "ALLOWED_ORIGINS": "https://app.example.com"},
        )
    assert "DEV_LOGIN_ENABLED: is a development-only switch" in str(info.value)
    assert "TOKEN_KEYSET_SECRET" in str(info.value)


def test_no_secret_in_logs_during_sign_in(auth_service: AuthService) -> None:
    tokens = auth_service.login("logs@example.com")
    refreshed = httpx.post(f"{auth_service.url}/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).json()
    httpx.post(f"{auth_service.url}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})  # reuse, logged
    httpx.get(f"{auth_service.url}/auth/me", headers={"Authorization": f"Bearer {refreshed['access_token']}"})
    time.sleep(0.5)
    output = auth_service.process.output()
    for secret in (
        tokens["access_token"],
        tokens["refresh_token"],
        refreshed["access_token"],
        refreshed["refresh_token"],
    ):
        assert secret not in output
