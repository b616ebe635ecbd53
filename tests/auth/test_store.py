"""functions.auth.store directly against the session's Firestore emulator: expiry at its bound, secret strength,
revocation of a family that does not exist. The same paths through the real auth process are in test_auth.py;
under contention in test_contention.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from functions.auth.store import TICKETS, AuthStore, _expired, new_secret


def test_a_document_expires_at_its_expiry_instant_and_one_without_expiry_is_expired() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert _expired({"expires_at": now}, now), "expires_at is the first instant it is no longer valid"
    assert not _expired({"expires_at": now + timedelta(microseconds=1)}, now)
    assert _expired({"expires_at": now - timedelta(seconds=1)}, now)
    assert _expired({}, now), "a document without expires_at is never valid"


def test_secrets_carry_at_least_256_bits() -> None:
    # token_urlsafe: 4 characters per 3 bytes; 32 bytes give 43 characters.
    assert all(len(new_secret()) >= 43 for _ in range(20))
    assert len({new_secret() for _ in range(100)}) == 100


def test_revoking_a_family_that_does_not_exist_says_so(firestore_client: Any) -> None:
    store = AuthStore()
    assert store.revoke_family("no-such-family", "logout") is False
    assert store.family("no-such-family") is None
    family_id, token = store.start_family("u1", ttl_s=60)
    assert store.family_of(token) == family_id
    assert store.family_of(new_secret()) is None
    assert store.revoke_family(family_id, "logout") is True
    family = store.family(family_id)
    assert family is not None and family["revoked_reason"] == "logout" and family["user_id"] == "u1"
    assert store.rotate(token, ttl_s=60).outcome == "revoked"


def test_a_rotated_token_and_its_successor_live_for_the_ttl(firestore_client: Any) -> None:
    store = AuthStore()
    _, token = store.start_family("u2", ttl_s=60)
    first = store.rotate(token, ttl_s=60)
    assert first.outcome == "ok" and first.refresh_token
    second = store.rotate(first.refresh_token, ttl_s=60)
    assert second.outcome == "ok", "the successor is valid for its ttl"
    secret = new_secret()
    store.put(TICKETS, secret, {"user_id": "u2"}, ttl_s=60)
    taken = store.take(TICKETS, secret)
    assert taken is not None and taken["user_id"] == "u2", "a fresh single-use document is valid"
    assert store.take(TICKETS, secret) is None
