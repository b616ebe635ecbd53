"""Google ID token checks (functions.auth.providers.GoogleProvider.verify_id_token) against keys served over
HTTP: each check must refuse its forged token."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from functions.auth.providers import GoogleProvider, SignInError
from functions.auth.settings import AuthSettings
from shared.config import load_settings
from tests.auth.forge import hand_made
from tests.auth.test_tokens import JwksServer

ISSUER = "https://accounts.test.example"
CLIENT = "client-123.apps.test.example"


@pytest.fixture(scope="module")
def google() -> Any:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**json.loads(RSAAlgorithm.to_jwk(key.public_key())), "kid": "g1", "alg": "RS256", "use": "sig"}
    server = JwksServer(lambda: {"keys": [jwk]})
    settings = load_settings(
        AuthSettings,
        {
            "NETRA_ENV": "test",
            "DATABASE_URL": "postgresql://u:p@h:1/d",
            "GOOGLE_CLIENT_ID": CLIENT,
            "GOOGLE_CLIENT_SECRET": "s" * 24,
            "GOOGLE_ISSUER": ISSUER,
        },
    )
    provider = GoogleProvider(settings)
    provider.metadata = {
        "issuer": ISSUER,
        "jwks_uri": server.url,
        "authorization_endpoint": "x",
        "token_endpoint": "x",
        "id_token_signing_alg_values_supported": ["RS256"],
    }
    yield provider, key
    server.close()


def id_token(key: Any, kid: str = "g1", alg: str = "RS256", **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": CLIENT,
        "sub": "1234",
        "email": "g@example.com",
        "email_verified": True,
        "nonce": "n-1",
        "iat": now,
        "exp": now + 600,
        **overrides,
    }
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def test_a_good_id_token_passes(google: Any) -> None:
    provider, key = google
    assert provider.verify_id_token(id_token(key), "n-1")["email"] == "g@example.com"
    two_audiences = id_token(key, aud=[CLIENT, "other"], azp=CLIENT)
    assert provider.verify_id_token(two_audiences, "n-1")["sub"] == "1234"


def test_every_id_token_check_refuses_its_forgery(google: Any) -> None:
    """Security: signature, algorithm, issuer, audience, azp, expiry, nonce and key id are all checked."""
    provider, key = google
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    good = id_token(key)
    claims = jwt.decode(good, options={"verify_signature": False})
    cases = {
        "signed by another key": id_token(other),
        "wrong nonce": id_token(key, nonce="n-2"),
        "no nonce": id_token(key, nonce=None),
        "wrong audience": id_token(key, aud="someone-else"),
        "several audiences, azp not us": id_token(key, aud=[CLIENT, "other"], azp="other"),
        "wrong issuer": id_token(key, iss="https://evil.example"),
        "expired": id_token(key, iat=now - 7200, exp=now - 3600),
        "unknown kid": id_token(other, kid="g2"),
        "alg none": hand_made({"alg": "none", "kid": "g1"}, claims, None),
        "HS256 with the client secret": hand_made({"alg": "HS256", "kid": "g1"}, claims, b"s" * 24),
        "not a JWT": "nope",
    }
    for name, token in cases.items():
        with pytest.raises(SignInError) as info:
            provider.verify_id_token(token, "n-1")
        assert info.value.code == "invalid_id_token", name
