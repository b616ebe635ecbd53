"""shared.tokens in process and without servers where none is needed: what the verifier refuses before any key
is looked at, which JWKS entries become keys, how its key-set fetch retries, times out and falls back, and which
key signs during a rotation. Written against the mutation run's survivors (docs/TESTING.md, "Reading a
survivor"); fast, so tests/mutation/modules.toml runs this file first for the tokens module."""

from __future__ import annotations

import base64
import json
import socket
import time
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

import shared.tokens.verify as verify_module
from shared.tokens.keyset import (
    KeysetError,
    _private_key,
    generate_key,
    generate_keyset,
    jwks_from_keyset,
    parse_keyset,
    prune_keyset,
    public_jwk,
    rotate_keyset,
    sign_access_token,
    signing_key,
)
from shared.tokens.verify import KeySetUnavailable, TokenInvalid, TokenVerifier, public_key_from_jwk

MAX_TOKEN_CHARS = 16_384  # the verifier's limit (shared/tokens/verify.py)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def local_verifier(jwks: Any, **options: Any) -> TokenVerifier:
    """A verifier reading the JWKS from a callable (the in-process source auth itself uses)."""
    source = jwks if callable(jwks) else (lambda: jwks)
    return TokenVerifier(lambda: "http://unused.invalid", "iss-a", "aud-a", fetch_jwks=source, **options)


def sign(keyset: dict[str, Any], **overrides: Any) -> str:
    args = {"user_id": "u", "email": "e", "permissions": [], "issuer": "iss-a", "audience": "aud-a", "ttl_s": 600}
    return sign_access_token(keyset, **{**args, **overrides})[0]


def token_of_length(keyset: dict[str, Any], length: int) -> str:
    """A validly signed token of exactly ``length`` characters (padding in a claim and in a header field:
    base64url cannot make every length from one segment)."""
    key = keyset["keys"][0]
    now = int(time.time())
    claims = {"iss": "iss-a", "aud": "aud-a", "sub": "u", "iat": now, "exp": now + 600}

    def make(pad: int, header_pad: int) -> str:
        headers = {"kid": key["kid"], "pad": "p" * header_pad}
        return jwt.encode({**claims, "email": "e" * pad}, _private_key(key), algorithm="ES256", headers=headers)

    estimate = (length - len(make(0, 0))) * 3 // 4
    for header_pad in range(4):
        for pad in range(estimate - 4, estimate + 4):
            token = make(pad, header_pad)
            if len(token) == length:
                return token
    raise AssertionError(f"no token of {length} characters")


def test_only_ec_p256_es256_jwks_become_keys() -> None:
    """Security: each field of a JWK alone decides that it is refused (a P-384 key, an RSA key or a key
    published for another algorithm cannot be used to verify an ES256 token)."""
    good = public_jwk(generate_key("k"))
    assert public_key_from_jwk(good).curve.name == "secp256r1"
    assert public_key_from_jwk({k: v for k, v in good.items() if k != "alg"}).curve.name == "secp256r1"
    p384 = {**ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()).public_key(), as_dict=True)}
    refused = {
        "P-384 curve": {**p384, "kid": "k", "alg": "ES256"},
        "RSA key type": {**good, "kty": "RSA"},
        "ES384 algorithm": {**good, "alg": "ES384"},
        "HS256 algorithm": {**good, "alg": "HS256"},
    }
    for name, jwk in refused.items():
        with pytest.raises(ValueError) as info:
            public_key_from_jwk(jwk)
        assert str(info.value) == "not an ES256 key", name


def test_junk_jwks_entries_are_skipped_and_the_good_key_still_verifies() -> None:
    keyset = generate_keyset()
    good = jwks_from_keyset(keyset)["keys"][0]
    junk: list[Any] = ["a string", 7, None, {**good, "kid": 5}, {"kty": "EC"}, {**good, "kid": "p", "crv": "P-384"}]
    verifier = local_verifier({"keys": [*junk, good]})
    assert verifier.warm() == 1
    assert verifier.verify(sign(keyset)).sub == "u"
    assert verifier.fetches == 1


def test_token_length_limit_is_exact() -> None:
    """A token of exactly the limit verifies; one character more is refused as malformed, before any key is
    looked at (an oversized token costs no parsing)."""
    keyset = generate_keyset()
    verifier = local_verifier(jwks_from_keyset(keyset))
    at_limit, over = token_of_length(keyset, MAX_TOKEN_CHARS), token_of_length(keyset, MAX_TOKEN_CHARS + 1)
    assert verifier.verify(at_limit).sub == "u"
    with pytest.raises(TokenInvalid) as info:
        verifier.verify(over)
    assert (info.value.reason, str(info.value)) == ("malformed", "token is not a JWT")


def test_garbage_header_is_malformed_before_any_key_is_fetched() -> None:
    """Three dot-separated parts with a header that is not base64url JSON: TokenInvalid("malformed") (a 401
    for the caller), never PyJWT's own error (a 500), and no key-set fetch."""

    def no_fetch() -> dict[str, Any]:
        raise AssertionError("a malformed token must not fetch the key set")

    verifier = local_verifier(no_fetch)
    body = b64(b'{"sub": "u"}')
    for header in ["!!!", b64(b"not json"), b64(b"[1, 2]"), b64(b'{"alg": "ES256"'), b64(b"\xff\xfe"), ""]:
        with pytest.raises(TokenInvalid) as info:
            verifier.verify(f"{header}.{body}.{b64(b's' * 64)}")
        assert info.value.reason == "malformed", header


def test_clock_skew_within_the_leeway_is_accepted() -> None:
    """Tokens from an issuer whose clock is a few seconds off still verify (iat slightly in the future, exp
    just past); well past the leeway they are refused. The exact leeway is a tuning value."""
    keyset = generate_keyset()
    verifier = local_verifier(jwks_from_keyset(keyset))
    assert verifier.verify(sign(keyset, now=time.time() + 10)).sub == "u"
    assert verifier.verify(sign(keyset, now=time.time() - 600 - 10)).sub == "u"  # expired 10 s ago
    with pytest.raises(TokenInvalid) as info:
        verifier.verify(sign(keyset, now=time.time() - 600 - 300))
    assert info.value.reason == "expired"


def test_refresh_failure_keeps_the_cached_keys() -> None:
    """Auth unreachable while a verifier holds its keys: a token with an unknown kid is refused as such (401),
    not turned into KeySetUnavailable (a 503 storm), and known keys keep verifying."""
    keyset = generate_keyset()
    state = {"up": True, "calls": 0}

    def fetch() -> dict[str, Any]:
        state["calls"] += 1
        if not state["up"]:
            raise ConnectionError("auth is down")
        return jwks_from_keyset(keyset)

    verifier = local_verifier(fetch, min_refresh_interval_s=0)
    good = sign(keyset)
    assert verifier.verify(good).sub == "u"
    state["up"] = False
    stranger = sign(generate_keyset())
    with pytest.raises(TokenInvalid) as info:
        verifier.verify(stranger)
    assert info.value.reason == "unknown_kid"
    assert state["calls"] == 2, "the unknown kid tried one refresh"
    assert verifier.verify(good).sub == "u"
    assert verifier.fetches == 1


def test_scenario_9_key_set_fetch_retries_with_backoff_within_its_budget() -> None:
    """Scenario 9: while auth cannot even be found (discovery fails), the first fetch retries within its
    budget, backing off between attempts instead of spinning; then KeySetUnavailable. A request right after
    that fails fast without another round of attempts."""
    attempts: list[float] = []

    def url() -> str:
        attempts.append(time.monotonic())
        raise ConnectionError("auth is not registered yet")

    verifier = TokenVerifier(url, "iss-a", "aud-a", fetch_budget_s=1.0)
    with pytest.raises(KeySetUnavailable) as info:
        verifier.warm()
    assert str(info.value) == "key set unreachable: ConnectionError"
    # Backoff: 0.1 s doubling up to 1 s (randomised) gives a handful of attempts in 1 s; no wait, thousands.
    assert 2 <= len(attempts) < 50, len(attempts)
    tried = len(attempts)
    with pytest.raises(KeySetUnavailable) as info:
        verifier.verify(sign(generate_keyset()))
    assert "fetch failed just now" in str(info.value)
    assert len(attempts) == tried
    assert verifier.fetches == 0


def test_scenario_9_a_key_set_server_that_never_answers_ends_in_a_timeout() -> None:
    """Scenario 9: auth accepts the connection but never answers (a stuck instance): each fetch attempt ends at
    its timeout, and the budget ends the retries with KeySetUnavailable (the exact timeout is a tuning
    value). A listening socket that never accepts is such a server."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/.well-known/jwks.json"
        verifier = TokenVerifier(lambda: url, "iss-a", "aud-a", fetch_timeout_s=0.2, fetch_budget_s=0.5)
        with pytest.raises(KeySetUnavailable) as info:
            verifier.warm()
    assert isinstance(info.value.__cause__, httpx.TimeoutException)
    assert info.value.url == url


def test_scenario_20_a_second_rotation_within_the_lead_does_not_sign_with_an_unpublished_key() -> None:
    """Scenario 20: two rotations within publish_lead_s (the second to fix a mistake): the keys made in that
    time are not yet known to cached verifiers, so the last key published long enough keeps signing."""
    old = generate_key("old", created_at=datetime.now(UTC) - timedelta(days=3))
    middle = generate_key("middle", created_at=datetime.now(UTC) - timedelta(seconds=30))
    keyset = rotate_keyset({"active_kid": "middle", "keys": [old, middle]}, kid="new")
    now = time.time()
    assert signing_key(keyset, publish_lead_s=120, now=now)["kid"] == "old"
    assert signing_key(keyset, publish_lead_s=120, now=now + 100)["kid"] == "middle"
    assert signing_key(keyset, publish_lead_s=120, now=now + 121)["kid"] == "new"
    assert signing_key(keyset)["kid"] == "new", "without a lead the active key signs at once"


def test_keys_without_a_date_count_as_old() -> None:
    """Keysets written before created_at existed: such a key may sign at once, and stays the signing key while a
    dated successor is still within its publish lead."""
    undated = {k: v for k, v in generate_key("undated").items() if k != "created_at"}
    assert signing_key({"active_kid": "undated", "keys": [undated]}, publish_lead_s=120)["kid"] == "undated"
    rotated = rotate_keyset({"active_kid": "undated", "keys": [undated]}, kid="new")
    assert signing_key(rotated, publish_lead_s=120)["kid"] == "undated"
    assert signing_key(rotated, publish_lead_s=120, now=time.time() + 121)["kid"] == "new"


def test_public_half_is_derived_only_when_x_and_y_are_both_absent() -> None:
    """Keys written before x/y existed get their public half from the private key; a key with only one of them
    is refused with a clear KeysetError (never a KeyError, never a JWK with an empty coordinate)."""
    key = generate_key("k")
    legacy = {k: v for k, v in key.items() if k not in ("x", "y")}
    assert {k: public_jwk(legacy)[k] for k in ("x", "y")} == {"x": key["x"], "y": key["y"]}
    no_y, empty_x, empty_y = generate_key("a"), generate_key("b"), generate_key("c")  # fresh PEMs: loads are cached
    for partial in ({k: v for k, v in no_y.items() if k != "y"}, {**empty_x, "x": ""}, {**empty_y, "y": ""}):
        with pytest.raises(KeysetError):
            public_jwk(partial)


def test_empty_subject_is_refused() -> None:
    keyset = generate_keyset()
    verifier = local_verifier(jwks_from_keyset(keyset))
    with pytest.raises(TokenInvalid) as info:
        verifier.verify(sign(keyset, user_id=""))
    assert info.value.reason == "missing_claim"


def test_each_malformed_keyset_entry_is_refused() -> None:
    pem = generate_key("k")["private_key_pem"]
    entries: list[Any] = [
        "a string",
        {"kid": 5, "private_key_pem": pem},
        {"kid": "a"},
        {"kid": "a", "private_key_pem": ""},
    ]
    for entry in entries:
        with pytest.raises(KeysetError) as info:
            parse_keyset(json.dumps({"active_kid": "a", "keys": [entry]}))
        assert str(info.value) == "keyset key #0 needs a string kid and a private_key_pem", entry


def test_rotation_and_pruning_boundaries_are_inclusive() -> None:
    """Scenario 20: a key signs from the instant it has been published for publish_lead_s; an old key is kept
    until its successor has signed for longer than the token lifetime plus clock skew."""
    created = 1_700_000_000  # whole seconds: the boundaries below are exact
    old = generate_key("old", created_at=datetime.fromtimestamp(created - 86_400, UTC))
    new = generate_key("new", created_at=datetime.fromtimestamp(created, UTC))
    keyset = {"active_kid": "new", "keys": [old, new]}
    assert signing_key(keyset, publish_lead_s=120, now=created + 119.5)["kid"] == "old"
    assert signing_key(keyset, publish_lead_s=120, now=created + 120)["kid"] == "new"
    middle = generate_key("middle", created_at=datetime.fromtimestamp(created - 60, UTC))
    newest = generate_key("newest", created_at=datetime.fromtimestamp(created + 60, UTC))
    three = {"active_kid": "newest", "keys": [old, middle, newest]}
    assert signing_key(three, publish_lead_s=120, now=created + 59.5)["kid"] == "old"
    assert signing_key(three, publish_lead_s=120, now=created + 60)["kid"] == "middle", "ripe at the instant"
    signs_from = created + 120
    kept = prune_keyset(keyset, access_ttl_s=900, publish_lead_s=120, now=signs_from + 900 + 60, skew_s=60)
    assert [k["kid"] for k in kept["keys"]] == ["old", "new"]
    pruned = prune_keyset(keyset, access_ttl_s=900, publish_lead_s=120, now=signs_from + 900 + 60.5, skew_s=60)
    assert [k["kid"] for k in pruned["keys"]] == ["new"]


def test_made_up_kids_cost_one_fetch_per_refresh_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown kid refetches the key set at most once per min_refresh_interval_s (a flood of made-up kids
    cannot hammer auth), from the instant the interval has passed; a failed refresh also waits an interval."""
    clock = {"now": 1000.0}
    monkeypatch.setattr(verify_module, "time", SimpleNamespace(monotonic=lambda: clock["now"]))
    keyset = generate_keyset()
    calls: list[float] = []
    up = {"yes": True}

    def fetch() -> dict[str, Any]:
        calls.append(clock["now"])
        if not up["yes"]:
            raise ConnectionError("auth is down")
        return jwks_from_keyset(keyset)

    verifier = local_verifier(fetch, min_refresh_interval_s=30)
    assert verifier.verify(sign(keyset)).sub == "u"
    stranger = sign(generate_keyset())

    def refused_at(moment: float) -> None:
        clock["now"] = moment
        with pytest.raises(TokenInvalid) as info:
            verifier.verify(stranger)
        assert info.value.reason == "unknown_kid"

    for moment in (1000.0, 1029.5, 1030.0, 1059.9):
        refused_at(moment)
    assert calls == [1000.0, 1030.0]
    up["yes"] = False
    for moment in (1060.0, 1089.9, 1090.0):
        refused_at(moment)
    assert calls == [1000.0, 1030.0, 1060.0, 1090.0]


def test_created_at_offsets_are_honoured_and_a_naive_date_is_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    """A keyset edited by hand may carry created_at with another offset, or none: +02:00 is converted, not
    relabelled; a naive date is UTC, not the machine's local time."""
    created = 1_700_000_000
    old = generate_key("old", created_at=datetime.fromtimestamp(created - 86_400, UTC))
    east = datetime.fromtimestamp(created, UTC).astimezone(timezone(timedelta(hours=2)))
    naive = datetime.fromtimestamp(created, UTC).replace(tzinfo=None)
    monkeypatch.setenv("TZ", "LOCAL-3")  # the machine's clock 3 h east of UTC: a naive date read as local differs
    time.tzset()
    try:
        for when in (east.isoformat(), naive.isoformat()):
            new = {**generate_key("new"), "created_at": when}
            keyset = {"active_kid": "new", "keys": [old, new]}
            assert signing_key(keyset, publish_lead_s=120, now=created + 119)["kid"] == "old", when
            assert signing_key(keyset, publish_lead_s=120, now=created + 120)["kid"] == "new", when
    finally:
        monkeypatch.undo()
        time.tzset()


def test_plan_session_and_expiry_round_trip() -> None:
    keyset = generate_keyset()
    verifier = local_verifier(jwks_from_keyset(keyset))
    token, expires_at = sign_access_token(
        keyset,
        user_id="u",
        email="e",
        permissions=["user"],
        issuer="iss-a",
        audience="aud-a",
        ttl_s=600,
        session_id="s-1",
        plan="pro",
    )
    claims = verifier.verify(token)
    assert (claims.sid, claims.plan, claims.exp) == ("s-1", "pro", expires_at)
    assert expires_at == claims.iat + 600
    bare = verifier.verify(sign(keyset))
    assert (bare.sid, bare.plan) == (None, None)


def test_a_keyset_key_that_is_not_ec_p256_is_refused_when_it_would_sign() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    for private in (ec.generate_private_key(ec.SECP384R1()), rsa.generate_private_key(65537, 2048)):
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        keyset = {"active_kid": "k", "keys": [{"kid": "k", "private_key_pem": pem}]}
        with pytest.raises(KeysetError) as info:
            sign(keyset)
        assert str(info.value) == "keyset key 'k' is not an EC P-256 private key"


def test_jwks_entries_with_bad_coordinates_are_skipped() -> None:
    """A JWKS entry whose point is not on the curve, lacks a coordinate or has one of the wrong type is not a key
    (ValueError from public_key_from_jwk, skipped by the fetch); the good key beside it still verifies."""
    keyset = generate_keyset()
    good = jwks_from_keyset(keyset)["keys"][0]
    off_curve = {**good, "kid": "off", "y": good["x"]}
    with pytest.raises(ValueError):
        public_key_from_jwk(off_curve)
    no_y = {k: v for k, v in good.items() if k != "y"} | {"kid": "no-y"}
    number = {**good, "kid": "number", "x": 5}
    verifier = local_verifier({"keys": [off_curve, no_y, number, good]})
    assert verifier.warm() == 1
    assert verifier.verify(sign(keyset)).sub == "u"


def test_broken_tokens_are_refused_with_their_reason_before_or_without_a_key() -> None:
    keyset = generate_keyset()
    good = sign(keyset)
    _, body, signature = good.split(".")

    def no_fetch() -> dict[str, Any]:
        raise AssertionError("must be refused before the key set is fetched")

    early = local_verifier(no_fetch)
    for token in (None, good + ".x", "a.b", b64(b'{"alg": "ES256", "kid": 5}') + f".{body}.{signature}"):
        with pytest.raises(TokenInvalid) as info:
            early.verify(token)  # type: ignore[arg-type]
        assert info.value.reason == "malformed", token  # (PyJWT refuses a kid that is not a string)
    with pytest.raises(TokenInvalid) as info:
        early.verify(b64(b'{"alg": "ES256", "kid": ""}') + f".{body}.{signature}")
    assert (info.value.reason, str(info.value)) == ("unknown_kid", "token has no key id")
    verifier = local_verifier(jwks_from_keyset(keyset))
    key = keyset["keys"][0]
    now = int(time.time())
    odd_iat = jwt.encode(  # signed by a known key; iat is not a number: PyJWT's InvalidIssuedAtError
        {"iss": "iss-a", "aud": "aud-a", "sub": "u", "iat": "soon", "exp": now + 600},
        _private_key(key),
        algorithm="ES256",
        headers={"kid": key["kid"]},
    )
    with pytest.raises(TokenInvalid) as info:
        verifier.verify(odd_iat)
    assert (info.value.reason, str(info.value)) == ("malformed", "token is invalid: InvalidIssuedAtError")


def test_always_current_verifier_drops_a_retired_key_at_once() -> None:
    """Auth verifies its own tokens from the keyset it reads (always_current): a key pruned from the keyset stops
    verifying on the next request, not after a refresh interval."""
    old = generate_key("old")
    current = {"document": jwks_from_keyset({"active_kid": "old", "keys": [old]})}
    verifier = local_verifier(lambda: current["document"], always_current=True)
    old_token = sign({"active_kid": "old", "keys": [old]})
    assert verifier.verify(old_token).kid == "old"
    new = generate_key("new")
    current["document"] = jwks_from_keyset({"active_kid": "new", "keys": [new]})
    with pytest.raises(TokenInvalid) as info:
        verifier.verify(old_token)
    assert info.value.reason == "unknown_kid"
    assert verifier.verify(sign({"active_kid": "new", "keys": [new]})).kid == "new"


def test_verifier_from_settings_uses_the_configured_url_else_local_discovery(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.discovery import write_entry
    from shared.tokens.verify import verifier_from_settings

    monkeypatch.setenv("NETRA_DISCOVERY_DIR", str(tmp_path))
    write_entry("auth", "127.0.0.1", 8123)
    settings = SimpleNamespace(
        auth_issuer="iss-a", token_audience="aud-a", jwks_refresh_min_interval_s=7.0, auth_jwks_url=None
    )
    found = verifier_from_settings(settings)  # type: ignore[arg-type]
    assert found._jwks_url() == "http://127.0.0.1:8123/.well-known/jwks.json"
    assert (found.issuer, found.audience, found.min_refresh_interval_s) == ("iss-a", "aud-a", 7.0)
    settings.auth_jwks_url = "https://auth.example/.well-known/jwks.json"
    assert verifier_from_settings(settings)._jwks_url() == settings.auth_jwks_url  # type: ignore[arg-type]


def test_keyset_documents_of_the_wrong_shape_are_refused() -> None:
    for raw in ("[]", '"text"', '{"keys": 5}', '{"keys": {}}', '{"keys": "abc"}', '{"active_kid": "a"}'):
        with pytest.raises(KeysetError) as info:
            parse_keyset(raw)
        assert str(info.value).startswith("keyset must be {"), raw


def test_without_a_publish_lead_a_new_key_signs_at_once() -> None:
    """sign_access_token's default lead is none: a key made at this very moment signs (the lead, when auth
    passes one, is what holds a new key back until verifiers have seen it)."""
    moment = float(int(time.time()))  # whole seconds: created_at keeps microseconds, and rounding up would not be ripe
    old = generate_key("old", datetime.fromtimestamp(moment - 3600, UTC))
    new = generate_key("new", datetime.fromtimestamp(moment, UTC))
    keyset = {"active_kid": "new", "keys": [old, new]}
    token = sign(keyset, now=moment)
    assert jwt.get_unverified_header(token)["kid"] == "new"
