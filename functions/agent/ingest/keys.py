"""Ingest keys: created and revoked by a signed-in user, shown once, stored as a SHA-256 hash.

A key authenticates the ingest routes (``POST /v1/traces``, ``POST /v1/litellm``) for its user and nothing else:
it is not a JWT, so every other route refuses it, and the ingest routes accept nothing but a key.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from shared.errors import NetraError

PREFIX = "nik_"  # "Netra ingest key": recognisable in a config file and by secret scanners
PREFIX_SHOWN = 12  # characters kept to identify a key on the page (nik_ + 8 of the random part)
MAX_KEYS_PER_USER = 20
# last_used_at is written at most this often per key, so a busy exporter does not update the row per request.
TOUCH_EVERY_S = 10


@dataclass(frozen=True)
class IngestKey:
    id: str
    user_id: str
    feature_attribute: str | None
    end_user_attribute: str | None


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)  # 256 random bits


def key_hash(key: str) -> str:
    # No salt or slow hash needed: the key is 256 random bits, not a password that could be guessed.
    return hashlib.sha256(key.encode()).hexdigest()


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row[k] for k in ("id", "name", "prefix", "feature_attribute", "end_user_attribute")}
    out["id"] = str(out["id"])
    for k in ("created_at", "last_used_at", "revoked_at"):
        out[k] = row[k].isoformat() if row.get(k) is not None else None
    out["active"] = row.get("revoked_at") is None
    return out


_COLUMNS = "id, name, prefix, feature_attribute, end_user_attribute, created_at, last_used_at, revoked_at"


class TooManyKeys(NetraError):
    pass


def create(
    db: Any, user_id: str, name: str, feature_attribute: str | None, end_user_attribute: str | None
) -> dict[str, Any]:
    """The new key's record with the key itself (``key``): the only time the key is ever returned."""
    key = new_key()
    with db.transaction() as tx:
        # Serialise concurrent creations of one user so that the limit holds.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext('ingest_keys:' || %s))", [user_id])
        active = tx.scalar("SELECT count(*) FROM ingest_keys WHERE user_id = %s AND revoked_at IS NULL", [user_id])
        if int(active) >= MAX_KEYS_PER_USER:
            raise TooManyKeys(f"at most {MAX_KEYS_PER_USER} active ingest keys per user; revoke one first")
        row = tx.one(
            f"""INSERT INTO ingest_keys (user_id, name, key_hash, prefix, feature_attribute, end_user_attribute)
                VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}""",
            [user_id, name, key_hash(key), key[:PREFIX_SHOWN], feature_attribute, end_user_attribute],
        )
    return {**_public(row or {}), "key": key}


def list_keys(db: Any, user_id: str) -> list[dict[str, Any]]:
    rows = db.all(f"SELECT {_COLUMNS} FROM ingest_keys WHERE user_id = %s ORDER BY created_at DESC, id", [user_id])
    return [_public(r) for r in rows]


def revoke(db: Any, user_id: str, key_id: str) -> dict[str, Any] | None:
    """The revoked key's record; None when the user has no such key. Revoking twice keeps the first time."""
    row = db.one(
        f"""UPDATE ingest_keys SET revoked_at = COALESCE(revoked_at, now())
             WHERE id = %s AND user_id = %s RETURNING {_COLUMNS}""",
        [key_id, user_id],
    )
    return _public(row) if row else None


def authenticate(db: Any, key: str) -> IngestKey | None:
    """The active key matching ``key``, its last-used time refreshed (at most every TOUCH_EVERY_S)."""
    if not key.startswith(PREFIX) or len(key) > 100:
        return None
    row = db.one(
        f"""WITH k AS (SELECT id FROM ingest_keys WHERE key_hash = %s AND revoked_at IS NULL),
                 touched AS (UPDATE ingest_keys SET last_used_at = now()
                              WHERE id = (SELECT id FROM k)
                                AND (last_used_at IS NULL OR last_used_at < now() - interval '{TOUCH_EVERY_S} seconds'))
            SELECT id::text, user_id::text, feature_attribute, end_user_attribute
              FROM ingest_keys WHERE id = (SELECT id FROM k)""",
        [key_hash(key)],
    )
    if row is None:
        return None
    return IngestKey(row["id"], row["user_id"], row["feature_attribute"], row["end_user_attribute"])
