"""The signing side of access tokens (auth only): the keyset document, its rotation, and signing.

The keyset (JSON) holds every key that may still verify a live token and names the one that signs:
``{"active_kid": "k2", "keys": [{"kid": "k1", "alg": "ES256", "private_key_pem": "...", "created_at": "..."}]}``.

Rotation without a redeploy (scenario 20): add a key and make it active in one secret version
(:func:`rotate_keyset`). Every key is published in the JWKS as soon as auth reads the keyset, but a key
only signs once it is ``publish_lead_s`` old (its ``created_at``), so verifiers holding a cached JWKS have
seen it before the first token that needs it; until then the previous key keeps signing. The old key stays
in the keyset (published) until the tokens it signed have expired; :func:`prune_keyset` drops it after that.

Keys carry their public half (``x``/``y``) so publishing the JWKS needs no PEM parsing. Verification is
:mod:`shared.tokens.verify`.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from shared.errors import NetraError
from shared.tokens.verify import ALGORITHM


class KeysetError(NetraError, ValueError):
    """A keyset document that cannot be used; the message never contains key material."""


def generate_key(kid: str | None = None, created_at: datetime | None = None) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "kid": kid or uuid.uuid4().hex[:16],
        "alg": ALGORITHM,
        "private_key_pem": pem,
        "created_at": (created_at or datetime.now(UTC)).isoformat(),
        # The public half, so publishing needs no PEM parsing; checked against the private key whenever that
        # is loaded to sign.
        **_public_xy(key),
    }


def generate_keyset() -> dict[str, Any]:
    key = generate_key()
    return {"active_kid": key["kid"], "keys": [key]}


def _created(key: dict[str, Any]) -> float:
    raw = key.get("created_at")
    if not raw:
        return 0.0  # keys without a date count as old: they may sign at once
    moment = datetime.fromisoformat(str(raw))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def parse_keyset(raw: str) -> dict[str, Any]:
    """Validate a keyset document. Errors name the problem, never the value (it holds private keys)."""
    try:
        keyset = json.loads(raw)
    except ValueError:
        raise KeysetError('keyset is not JSON; expected {"active_kid": ..., "keys": [...]}') from None
    if not isinstance(keyset, dict) or not isinstance(keyset.get("keys"), list) or not keyset["keys"]:
        raise KeysetError('keyset must be {"active_kid": ..., "keys": [{"kid", "private_key_pem", "created_at"}]}')
    kids = []
    for index, key in enumerate(keyset["keys"]):
        if not isinstance(key, dict) or not isinstance(key.get("kid"), str) or not key.get("private_key_pem"):
            raise KeysetError(f"keyset key #{index} needs a string kid and a private_key_pem")
        if key.get("alg", ALGORITHM) != ALGORITHM:
            raise KeysetError(f"keyset key {key['kid']!r}: alg must be {ALGORITHM}")
        try:
            _created(key)
        except (TypeError, ValueError):
            raise KeysetError(f"keyset key {key['kid']!r}: created_at must be an ISO 8601 timestamp") from None
        kids.append(key["kid"])
    if len(set(kids)) != len(kids):
        raise KeysetError("keyset has two keys with the same kid")
    if keyset.get("active_kid") not in kids:
        raise KeysetError("keyset active_kid must name one of its keys")
    return keyset


def signing_key(keyset: dict[str, Any], publish_lead_s: float = 0.0, now: float | None = None) -> dict[str, Any]:
    """The key that signs now: ``active_kid`` once it has been published for ``publish_lead_s``; before
    that, the newest older key that has (so a one-step rotation never signs with an unpublished key)."""
    moment = time.time() if now is None else now
    keys = {k["kid"]: k for k in keyset["keys"]}
    active = keys[keyset["active_kid"]]
    if _created(active) + publish_lead_s <= moment:
        return active
    ripe = [k for k in keyset["keys"] if _created(k) + publish_lead_s <= moment and _created(k) < _created(active)]
    return max(ripe, key=_created) if ripe else active


def rotate_keyset(keyset: dict[str, Any], kid: str | None = None) -> dict[str, Any]:
    """A copy with a new key that is active (it signs once ``publish_lead_s`` has passed)."""
    key = generate_key(kid)
    return {**keyset, "active_kid": key["kid"], "keys": [*keyset["keys"], key]}


def prune_keyset(
    keyset: dict[str, Any], access_ttl_s: float, publish_lead_s: float, now: float | None = None, skew_s: float = 60.0
) -> dict[str, Any]:
    """A copy without the keys no live token can need: a key is dropped once a newer key has been signing
    for longer than the access-token lifetime (plus clock skew). The signing key is always kept."""
    moment = time.time() if now is None else now
    current = signing_key(keyset, publish_lead_s, moment)
    kept = []
    for key in keyset["keys"]:
        newer_signing_since = [
            _created(k) + publish_lead_s
            for k in keyset["keys"]
            if _created(k) > _created(key) and _created(k) + publish_lead_s <= moment
        ]
        retired_for = moment - min(newer_signing_since) if newer_signing_since else 0.0
        if key is current or key["kid"] == keyset["active_kid"] or retired_for <= access_ttl_s + skew_s:
            kept.append(key)
    return {**keyset, "keys": kept}


_private_keys: dict[str, Any] = {}  # PEM -> loaded key (loading costs more than signing)


def _private_key(key: dict[str, Any]) -> Any:
    pem = key["private_key_pem"]
    loaded = _private_keys.get(pem)
    if loaded is None:
        from cryptography.hazmat.primitives import serialization

        loaded = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey) or loaded.curve.name != "secp256r1":
            raise KeysetError(f"keyset key {key['kid']!r} is not an EC P-256 private key")
        if "x" in key and _public_xy(loaded) != {"x": key["x"], "y": key.get("y")}:
            raise KeysetError(f"keyset key {key['kid']!r}: x/y do not belong to its private key")
        _private_keys[pem] = loaded
    return loaded


def _public_xy(private: Any) -> dict[str, str]:
    jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return {"x": jwk["x"], "y": jwk["y"]}


def public_jwk(key: dict[str, Any]) -> dict[str, Any]:
    xy = {"x": key["x"], "y": key["y"]} if key.get("x") and key.get("y") else _public_xy(_private_key(key))
    return {"kty": "EC", "crv": "P-256", **xy, "kid": key["kid"], "alg": ALGORITHM, "use": "sig"}


def jwks_from_keyset(keyset: dict[str, Any]) -> dict[str, Any]:
    return {"keys": [public_jwk(k) for k in keyset["keys"]]}


def sign_access_token(
    keyset: dict[str, Any],
    *,
    user_id: str,
    email: str,
    permissions: list[str],
    issuer: str,
    audience: str,
    ttl_s: int,
    session_id: str | None = None,
    publish_lead_s: float = 0.0,
    now: float | None = None,
    plan: str | None = None,
) -> tuple[str, int]:
    """Return (token, expires_at) signed with the current signing key (see :func:`signing_key`)."""
    moment = now if now is not None else time.time()
    issued = int(moment)
    # The key is chosen at the exact moment: with iat's whole second, a key made earlier in the same second
    # would not be ripe yet and the previous key would sign (seen as a flaky rotation test).
    key = signing_key(keyset, publish_lead_s, moment)
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": user_id,
        "email": email,
        "permissions": permissions,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    if session_id:
        claims["sid"] = session_id
    if plan:
        # Informational: the plan when the token was issued. Limits are enforced from the stored plan.
        claims["plan"] = plan
    # The loaded key object, not the PEM: PyJWT would parse the PEM again on every call.
    token = jwt.encode(claims, _private_key(key), algorithm=ALGORITHM, headers={"kid": key["kid"]})
    return token, issued + ttl_s
