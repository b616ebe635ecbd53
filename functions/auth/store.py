"""Auth's short-lived state in Firestore. Every secret value is stored only as its SHA-256 (the document id).

- ``oauth_states/{h(state)}``, ``auth_codes/{h(code)}``, ``ws_tickets/{h(ticket)}``: single-use documents,
  taken (read and deleted) in one transaction, so two concurrent takers cannot both succeed.
- ``refresh_tokens/{h(token)}`` -> family; ``refresh_families/{id}``: rotation marks the presented token used
  and adds its successor in one transaction. Presenting a used token revokes the family. Two racing rotations
  of one token are serialised by the transaction (Firestore and its emulator lock what a transaction read and
  abort a conflicting one), so exactly one wins and the others see a used token (scenario 21).

Both go through ``shared.firestore.run_transaction``: an aborted attempt is retried with jittered backoff within
a time budget, after which the caller gets 503 ``transaction_contention`` with Retry-After and nothing applied.

Every document carries ``expires_at`` (TTL policy); readers treat a past ``expires_at`` as absent because TTL
deletion is lazy.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.firestore import bounded  # stdlib-only module: no Google import at load

STATES = "oauth_states"
CODES = "auth_codes"
TICKETS = "ws_tickets"
REFRESH_TOKENS = "refresh_tokens"
FAMILIES = "refresh_families"
OP_TIMEOUT_S = 5.0


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def _now() -> datetime:
    return datetime.now(UTC)


def _expired(data: dict[str, Any], now: datetime) -> bool:
    expires = data.get("expires_at")
    return expires is None or expires <= now


@dataclass(frozen=True)
class Rotation:
    """Outcome of presenting a refresh token: ok, unknown, expired, revoked or reuse."""

    outcome: str
    user_id: str | None = None
    family_id: str | None = None
    refresh_token: str | None = None


class AuthStore:
    def __init__(self) -> None:
        from shared.firestore import get_client

        self.client = get_client()

    def _col(self, name: str) -> Any:
        from shared.firestore import collection_name

        return self.client.collection(collection_name(name))

    def ping(self) -> None:
        """One cheap read: proves the connection (startup component)."""
        self._col(STATES).document("_ping").get(**bounded(OP_TIMEOUT_S))

    # -- single-use documents ---------------------------------------------------------------------------
    def put(self, kind: str, secret: str, data: dict[str, Any], ttl_s: float) -> None:
        now = _now()
        self._col(kind).document(digest(secret)).create(
            {**data, "created_at": now, "expires_at": now + timedelta(seconds=ttl_s)}, **bounded(OP_TIMEOUT_S)
        )

    def take(self, kind: str, secret: str) -> dict[str, Any] | None:
        """The document's data if it exists and has not expired; it is deleted either way (single use)."""
        from shared.firestore import run_transaction

        ref = self._col(kind).document(digest(secret))

        def body(tx: Any) -> dict[str, Any] | None:
            snapshot = ref.get(transaction=tx, **bounded(OP_TIMEOUT_S))
            if not snapshot.exists:
                return None
            tx.delete(ref)
            data = snapshot.to_dict() or {}
            return None if _expired(data, _now()) else data

        return run_transaction(body, kind.removesuffix("s").replace("_", " "), key=ref.path)

    # -- refresh-token families -------------------------------------------------------------------------
    def start_family(self, user_id: str, ttl_s: float) -> tuple[str, str]:
        """A new session: (family_id, first refresh token)."""
        family_id = str(uuid.uuid4())
        token = new_secret()
        now = _now()
        expires = now + timedelta(seconds=ttl_s)
        batch = self.client.batch()
        batch.create(
            self._col(FAMILIES).document(family_id),
            {"user_id": user_id, "created_at": now, "expires_at": expires, "revoked_at": None},
        )
        batch.create(
            self._col(REFRESH_TOKENS).document(digest(token)),
            {"family_id": family_id, "user_id": user_id, "created_at": now, "expires_at": expires, "used_at": None},
        )
        batch.commit(**bounded(OP_TIMEOUT_S))
        return family_id, token

    def rotate(self, token: str, ttl_s: float) -> Rotation:
        from shared.firestore import run_transaction

        token_ref = self._col(REFRESH_TOKENS).document(digest(token))

        def body(tx: Any) -> Rotation:
            # All reads first (Firestore transactions read before they write).
            snapshot = token_ref.get(transaction=tx, **bounded(OP_TIMEOUT_S))
            if not snapshot.exists:
                return Rotation("unknown")
            data = snapshot.to_dict() or {}
            family_ref = self._col(FAMILIES).document(data["family_id"])
            family = family_ref.get(transaction=tx, **bounded(OP_TIMEOUT_S))
            family_data = family.to_dict() or {} if family.exists else {}
            now = _now()
            user_id, family_id = data["user_id"], data["family_id"]
            if not family.exists or family_data.get("revoked_at") is not None:
                return Rotation("revoked", user_id, family_id)
            if data.get("used_at") is not None:
                tx.update(family_ref, {"revoked_at": now, "revoked_reason": "reuse"})
                return Rotation("reuse", user_id, family_id)
            if _expired(data, now):
                return Rotation("expired", user_id, family_id)
            successor = new_secret()
            expires = now + timedelta(seconds=ttl_s)
            tx.update(token_ref, {"used_at": now})
            tx.create(
                self._col(REFRESH_TOKENS).document(digest(successor)),
                {"family_id": family_id, "user_id": user_id, "created_at": now, "expires_at": expires, "used_at": None},
            )
            tx.update(family_ref, {"expires_at": expires, "rotated_at": now})
            return Rotation("ok", user_id, family_id, successor)

        return run_transaction(body, "refresh token", key=token_ref.path)

    def family_of(self, token: str) -> str | None:
        snapshot = self._col(REFRESH_TOKENS).document(digest(token)).get(**bounded(OP_TIMEOUT_S))
        return (snapshot.to_dict() or {}).get("family_id") if snapshot.exists else None

    def revoke_family(self, family_id: str, reason: str) -> bool:
        """Mark the family revoked; False if it does not exist."""
        from google.api_core.exceptions import NotFound

        try:
            self._col(FAMILIES).document(family_id).update(
                {"revoked_at": _now(), "revoked_reason": reason}, **bounded(OP_TIMEOUT_S)
            )
        except NotFound:
            return False
        return True

    def family(self, family_id: str) -> dict[str, Any] | None:
        snapshot = self._col(FAMILIES).document(family_id).get(**bounded(OP_TIMEOUT_S))
        return snapshot.to_dict() if snapshot.exists else None
