"""Forged and broken access tokens for the security tests, each with the reason it must be refused for."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import jwt

from shared.tokens.keyset import generate_key, sign_access_token


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes | None) -> str:
    """PyJWT refuses to build these attacks, so they are assembled by hand."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    if hmac_key is None:
        return signing_input + "."
    return f"{signing_input}.{b64(hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest())}"


def keyset_of(local_dir: Path) -> dict[str, Any]:
    """The keyset a locally run auth generated (NETRA_LOCAL_DIR/auth_keyset.json)."""
    return json.loads((local_dir / "auth_keyset.json").read_text())


def public_pem(keyset: dict[str, Any], kid: str) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = next(k for k in keyset["keys"] if k["kid"] == kid)
    private = serialization.load_pem_private_key(key["private_key_pem"].encode(), password=None)
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def forged_tokens(good: str, keyset: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """name -> (token, expected reason). ``good`` is a valid token signed with ``keyset``."""
    header = jwt.get_unverified_header(good)
    claims = jwt.decode(good, options={"verify_signature": False})
    kid = header["kid"]
    head, _, signature = good.split(".")
    impostor = generate_key(kid)  # same kid, different key
    stranger = generate_key("no-such-kid")

    def sign(ks: dict[str, Any], **overrides: Any) -> str:
        args = {
            "user_id": claims["sub"],
            "email": claims["email"],
            "permissions": ["admin"],
            "issuer": claims["iss"],
            "audience": claims["aud"],
            "ttl_s": 600,
            **overrides,
        }
        return sign_access_token(ks, **args)[0]

    return {
        "alg none": (hand_made({**header, "alg": "none"}, claims, None), "bad_algorithm"),
        "HS256 signed with the public key": (
            hand_made({**header, "alg": "HS256"}, claims, public_pem(keyset, kid)),
            "bad_algorithm",
        ),
        "tampered payload": (
            f"{head}.{b64(json.dumps({**claims, 'permissions': ['admin']}).encode())}.{signature}",
            "bad_signature",
        ),
        "another key with the same kid": (sign({"active_kid": kid, "keys": [impostor]}), "bad_signature"),
        "expired": (sign(keyset, ttl_s=-3600), "expired"),
        "wrong audience": (sign(keyset, audience="another-app"), "wrong_audience"),
        "wrong issuer": (sign(keyset, issuer="https://evil.example"), "wrong_issuer"),
        "unknown kid": (sign({"active_kid": "no-such-kid", "keys": [stranger]}), "unknown_kid"),
        "no kid": (hand_made({"alg": "ES256", "typ": "JWT"}, claims, None) + b64(b"s" * 64), "unknown_kid"),
        "not a JWT": ("not-a-token", "malformed"),
    }
