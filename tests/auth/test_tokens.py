"""shared.tokens in process: the verifier every service uses (against a real HTTP JWKS server) and the keyset
primitives auth signs with."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest

from shared.config import REPO_ROOT
from shared.tokens.keyset import (
    KeysetError,
    generate_key,
    generate_keyset,
    jwks_from_keyset,
    parse_keyset,
    prune_keyset,
    rotate_keyset,
    sign_access_token,
    signing_key,
)
from shared.tokens.verify import KeySetUnavailable, TokenInvalid, TokenVerifier
from tests.auth.forge import forged_tokens


class JwksServer:
    """A real HTTP server publishing a JWKS; counts hits, can be down or slow."""

    def __init__(
        self, document: Callable[[], dict[str, Any]], delay_s: float = 0.0, available: Callable[[], bool] = lambda: True
    ) -> None:
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                outer.hits += 1
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

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sign(keyset: dict[str, Any], **overrides: Any) -> str:
    args = {
        "user_id": "u",
        "email": "e@example.com",
        "permissions": ["user"],
        "issuer": "iss-a",
        "audience": "aud-a",
        "ttl_s": 600,
        **overrides,
    }
    return sign_access_token(keyset, **args)[0]


def test_verifier_refuses_every_forged_token() -> None:
    """Security: each attack is refused with its own reason by the verifier other services use."""
    keyset = generate_keyset()
    server = JwksServer(lambda: jwks_from_keyset(keyset))
    try:
        verifier = TokenVerifier(lambda: server.url, "iss-a", "aud-a", min_refresh_interval_s=60)
        good = sign(keyset, session_id="s-1")
        claims = verifier.verify(good)
        assert (claims.sub, claims.email, claims.permissions, claims.sid) == ("u", "e@example.com", ["user"], "s-1")
        for name, (token, reason) in forged_tokens(good, keyset).items():
            with pytest.raises(TokenInvalid) as info:
                verifier.verify(token)
            assert info.value.reason == reason, name
        assert server.hits == 1, "made-up kids cause no refetch within the refresh interval"
    finally:
        server.close()


def test_missing_claims_and_future_tokens_are_refused() -> None:
    keyset = generate_keyset()
    key = keyset["keys"][0]
    server = JwksServer(lambda: jwks_from_keyset(keyset))
    try:
        verifier = TokenVerifier(lambda: server.url, "iss-a", "aud-a")
        now = int(time.time())
        no_exp = jwt.encode(
            {"iss": "iss-a", "aud": "aud-a", "sub": "u", "iat": now},
            key["private_key_pem"],
            algorithm="ES256",
            headers={"kid": key["kid"]},
        )
        with pytest.raises(TokenInvalid) as info:
            verifier.verify(no_exp)
        assert info.value.reason == "missing_claim"
        future = sign(keyset, now=time.time() + 3600)
        with pytest.raises(TokenInvalid) as info:
            verifier.verify(future)
        assert info.value.reason == "not_yet_valid"
    finally:
        server.close()


def test_scenario_22_first_verifications_fetch_the_key_set_once() -> None:
    """Scenario 22: a fresh instance verifying its first 50 tokens at once fetches the key set once."""
    keyset = generate_keyset()
    server = JwksServer(lambda: jwks_from_keyset(keyset), delay_s=0.2)
    try:
        verifier = TokenVerifier(lambda: server.url, "iss-a", "aud-a")
        token = sign(keyset)
        barrier = threading.Barrier(50)

        def first(_: int) -> str:
            barrier.wait()
            return verifier.verify(token).sub

        with ThreadPoolExecutor(50) as pool:
            assert list(pool.map(first, range(50))) == ["u"] * 50
        assert server.hits == 1
    finally:
        server.close()


def test_scenario_9_verifier_waits_for_key_set_then_serves() -> None:
    """Scenario 9: the verifier starts before auth's key set is reachable: it retries, then serves."""
    keyset = generate_keyset()
    up_at = time.monotonic() + 1.5
    server = JwksServer(lambda: jwks_from_keyset(keyset), available=lambda: time.monotonic() > up_at)
    try:
        verifier = TokenVerifier(lambda: server.url, "iss-a", "aud-a", fetch_budget_s=15)
        assert verifier.verify(sign(keyset)).sub == "u"
        assert server.hits > 1, "it had to retry"
    finally:
        server.close()


def test_scenario_9_unreachable_key_set_is_a_clear_error_and_waiters_fail_fast() -> None:
    """Scenario 9: past its budget the verifier raises KeySetUnavailable (callers answer 503); requests queued
    behind that fetch fail at once instead of each waiting a full budget."""
    keyset = generate_keyset()
    server = JwksServer(lambda: jwks_from_keyset(keyset), available=lambda: False)
    try:
        verifier = TokenVerifier(lambda: server.url, "iss-a", "aud-a", fetch_budget_s=1.0)
        token = sign(keyset)

        def attempt(_: int) -> str:
            try:
                verifier.verify(token)
            except KeySetUnavailable:
                return "unavailable"
            return "verified"

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(attempt, range(8))) == ["unavailable"] * 8
        hits_after_burst = server.hits
        assert hits_after_burst < 40, "waiters did not each run their own retry loop"
    finally:
        server.close()


def test_scenario_9_a_request_waits_one_attempt_for_the_warm_up_fetch_not_its_whole_budget() -> None:
    """Scenario 9, as the WebSocket bridge meets it: the startup warm-up retries an unreachable key set for its whole
    budget while holding the fetch. A handshake arriving then must get the retryable answer after one attempt's
    time (the client gives up on a handshake after 10 s), not wait the warm-up's budget out."""
    keyset = generate_keyset()
    server = JwksServer(lambda: jwks_from_keyset(keyset), available=lambda: False)
    try:
        verifier = TokenVerifier(lambda: server.url, "iss-a", "aud-a", fetch_timeout_s=0.3, fetch_budget_s=8.0)
        warm_up = threading.Thread(target=lambda: pytest.raises(KeySetUnavailable, verifier.warm), daemon=True)
        warm_up.start()
        deadline = time.monotonic() + 5
        while server.hits == 0:  # the warm-up holds the fetch
            assert time.monotonic() < deadline, "the warm-up never fetched"
            time.sleep(0.01)
        with pytest.raises(KeySetUnavailable) as info:
            verifier.verify(sign(keyset))
        assert warm_up.is_alive(), "the request waited for the warm-up's whole budget"
        assert str(info.value) == "key set fetch in progress"
    finally:
        server.close()


def test_scenario_9_key_set_unavailable_keeps_the_url_and_the_failure() -> None:
    """Scenario 9, for whoever debugs it: the error carries the URL it fetched and the HTTP failure as its
    cause; its message (which callers may log) still names only the failure's type."""
    keyset = generate_keyset()
    server = JwksServer(lambda: jwks_from_keyset(keyset), available=lambda: False)
    try:
        verifier = TokenVerifier(lambda: server.url, "iss-a", "aud-a", fetch_budget_s=0.2)
        with pytest.raises(KeySetUnavailable) as info:
            verifier.warm()
    finally:
        server.close()
    assert info.value.url == server.url
    assert isinstance(info.value.__cause__, httpx.HTTPStatusError)
    assert str(info.value) == "key set unreachable: HTTPStatusError"


def test_scenario_20_rotation_seen_by_a_verifier_with_a_cached_key_set() -> None:
    """Scenario 20: the signing key rotates while a verifier holds the old key set: old tokens keep
    verifying, and the new key is fetched on first sight of its kid."""
    keyset = generate_keyset()
    current = {"jwks": jwks_from_keyset(keyset)}
    server = JwksServer(lambda: current["jwks"])
    try:
        verifier = TokenVerifier(lambda: server.url, "iss-a", "aud-a", min_refresh_interval_s=0)
        old_token = sign(keyset)
        assert verifier.verify(old_token).kid == keyset["active_kid"]
        rotated = rotate_keyset(keyset)
        current["jwks"] = jwks_from_keyset(rotated)
        new_token = sign(rotated)  # lead 0: the new key signs at once
        new_kid = rotated["active_kid"]
        assert jwt.get_unverified_header(new_token)["kid"] == new_kid
        fetches = verifier.fetches
        assert verifier.verify(new_token).kid == new_kid
        assert verifier.fetches == fetches + 1
        assert verifier.verify(old_token).kid == keyset["active_kid"], "old tokens verify until they expire"
    finally:
        server.close()


def test_publish_lead_keeps_the_old_key_signing_until_the_new_one_is_known() -> None:
    old = generate_key(created_at=datetime.now(UTC) - timedelta(days=3))
    keyset = {"active_kid": old["kid"], "keys": [old]}
    old_kid = keyset["active_kid"]
    rotated = rotate_keyset(keyset)
    now = time.time()
    assert signing_key(rotated, publish_lead_s=120, now=now)["kid"] == old_kid, "published, not signing yet"
    assert signing_key(rotated, publish_lead_s=120, now=now + 121)["kid"] == rotated["active_kid"]
    token = sign_access_token(
        rotated, user_id="u", email="e", permissions=[], issuer="i", audience="a", ttl_s=60, publish_lead_s=120
    )[0]
    assert jwt.get_unverified_header(token)["kid"] == old_kid
    fresh = generate_keyset()
    assert signing_key(fresh, publish_lead_s=120)["kid"] == fresh["active_kid"], "a first key signs at once"


def test_prune_drops_a_key_only_after_its_tokens_expired() -> None:
    old = generate_key("old", created_at=datetime.now(UTC) - timedelta(days=30))
    new_created = datetime.now(UTC) - timedelta(seconds=500)
    new = generate_key("new", created_at=new_created)
    keyset = {"active_kid": "new", "keys": [old, new]}
    # "new" signs since 500 - 120 = 380 s: tokens of "old" (900 s lifetime) may still be live.
    assert [k["kid"] for k in prune_keyset(keyset, access_ttl_s=900, publish_lead_s=120)["keys"]] == ["old", "new"]
    later = new_created.timestamp() + 120 + 900 + 61
    assert [k["kid"] for k in prune_keyset(keyset, 900, 120, now=later)["keys"]] == ["new"]


def test_bad_keysets_are_refused_without_echoing_key_material() -> None:
    keyset = generate_keyset()
    pem = keyset["keys"][0]["private_key_pem"]
    cases = [
        "not json " + pem,
        json.dumps({"keys": []}),
        json.dumps({**keyset, "active_kid": "missing"}),
        json.dumps({"active_kid": "a", "keys": [{"kid": "a", "private_key_pem": pem, "alg": "HS256"}]}),
        json.dumps({"active_kid": "a", "keys": [{"kid": "a", "private_key_pem": pem, "created_at": "yesterday"}]}),
        json.dumps({"active_kid": "a", "keys": [{"kid": "a", "private_key_pem": pem}] * 2}),
    ]
    for raw in cases:
        with pytest.raises(KeysetError) as info:
            parse_keyset(raw)
        assert "PRIVATE KEY" not in str(info.value) and pem[40:80] not in str(info.value)
    assert parse_keyset(json.dumps(keyset)) == keyset


def test_keys_cli_rotate_prune_and_jwks() -> None:
    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "functions.auth.keys", *args],
            input=stdin,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    generated = json.loads(run("generate").stdout)
    rotated = json.loads(run("rotate", stdin=json.dumps(generated)).stdout)
    assert len(rotated["keys"]) == 2 and rotated["active_kid"] != generated["active_kid"]
    jwks = json.loads(run("jwks", stdin=json.dumps(rotated)).stdout)
    assert [k["kid"] for k in jwks["keys"]] == [k["kid"] for k in rotated["keys"]]
    assert all("d" not in k for k in jwks["keys"])
    pruned = json.loads(run("prune", stdin=json.dumps(rotated)).stdout)
    assert len(pruned["keys"]) == 2, "nothing is pruned while old tokens may be live"
    bad = run("rotate", stdin="{}")
    assert bad.returncode == 2 and "invalid keyset" in bad.stderr


def test_public_half_must_match_the_private_key() -> None:
    """Keys carry x/y so publishing needs no PEM parsing; a keyset whose x/y belong to another key is refused
    when it would sign, instead of issuing tokens nobody can verify."""
    good, other = generate_key("k1"), generate_key("k2")
    assert jwks_from_keyset({"active_kid": "k1", "keys": [good]})["keys"][0]["x"] == good["x"]
    mixed = {**good, "x": other["x"], "y": other["y"]}
    with pytest.raises(KeysetError):
        sign_access_token(
            {"active_kid": "k1", "keys": [mixed]},
            user_id="u",
            email="e",
            permissions=[],
            issuer="i",
            audience="a",
            ttl_s=60,
        )
    legacy = {k: v for k, v in good.items() if k not in ("x", "y")}  # keysets written before x/y existed
    assert jwks_from_keyset({"active_kid": "k1", "keys": [legacy]})["keys"][0]["x"] == good["x"]
