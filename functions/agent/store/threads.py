"""Threads and messages, always scoped to their owner, with keyset (cursor) pagination."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from shared.db.database import Database, Tx
from shared.errors import ApiError

THREAD_COLUMNS = "id::text AS id, title, metadata, created_at, updated_at"
MESSAGE_COLUMNS = (
    "id::text AS id, thread_id::text AS thread_id, role, content, run_id::text AS run_id, "
    "client_message_id, metadata, created_at"
)


def encode_cursor(ts: datetime, row_id: str) -> str:
    raw = json.dumps({"t": ts.isoformat(), "i": row_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        import uuid

        return datetime.fromisoformat(data["t"]), str(uuid.UUID(data["i"]))
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned") from None


def page(rows: list[dict[str, Any]], limit: int, ts_field: str) -> dict[str, Any]:
    """Rows were fetched with limit + 1: the extra one only says whether there is a next page."""
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode_cursor(rows[-1][ts_field], rows[-1]["id"]) if more and rows else None
    return {"items": rows, "next_cursor": cursor}


def create_thread(db: Database | Tx, user_id: str, title: str | None, metadata: dict[str, Any]) -> dict[str, Any]:
    row = db.one(
        f"""INSERT INTO threads (user_id, title, metadata) VALUES (%s, COALESCE(%s, 'New thread'), %s)
                     RETURNING {THREAD_COLUMNS}""",
        [user_id, title, json.dumps(metadata)],
    )
    assert row is not None
    return row


def get_thread(db: Database | Tx, user_id: str, thread_id: str, lock: bool = False) -> dict[str, Any] | None:
    sql = f"SELECT {THREAD_COLUMNS} FROM threads WHERE id = %s AND user_id = %s"
    return db.one(sql + (" FOR UPDATE" if lock else ""), [thread_id, user_id])


def list_threads(db: Database, user_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
    # Newest activity first; (updated_at, id) is the index order, so each page is one index range scan.
    if cursor:
        ts, last_id = decode_cursor(cursor)
        rows = db.all(
            f"""SELECT {THREAD_COLUMNS} FROM threads WHERE user_id = %s AND (updated_at, id) < (%s, %s)
                          ORDER BY updated_at DESC, id DESC LIMIT %s""",
            [user_id, ts, last_id, limit + 1],
        )
    else:
        rows = db.all(
            f"""SELECT {THREAD_COLUMNS} FROM threads WHERE user_id = %s
                          ORDER BY updated_at DESC, id DESC LIMIT %s""",
            [user_id, limit + 1],
        )
    return page(rows, limit, "updated_at")


def update_thread(
    db: Database, user_id: str, thread_id: str, title: str | None, metadata: dict[str, Any] | None
) -> dict[str, Any] | None:
    return db.one(
        f"""UPDATE threads SET title = COALESCE(%s, title), metadata = COALESCE(%s::jsonb, metadata),
                             updated_at = now()
                       WHERE id = %s AND user_id = %s RETURNING {THREAD_COLUMNS}""",
        [title, json.dumps(metadata) if metadata is not None else None, thread_id, user_id],
    )


def delete_thread(db: Database, user_id: str, thread_id: str) -> bool:
    with db.transaction() as tx:
        # Tell running workers to stop before their rows disappear with the thread.
        tx.execute(
            "UPDATE runs SET cancel_requested = true WHERE thread_id = %s AND user_id = %s "
            "AND status IN ('queued', 'running')",
            [thread_id, user_id],
        )
        return tx.execute("DELETE FROM threads WHERE id = %s AND user_id = %s", [thread_id, user_id]) > 0


def list_messages(db: Database, user_id: str, thread_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
    # Oldest first, as a conversation reads.
    if cursor:
        ts, last_id = decode_cursor(cursor)
        rows = db.all(
            f"""SELECT {MESSAGE_COLUMNS} FROM messages
                           WHERE thread_id = %s AND user_id = %s AND (created_at, id) > (%s, %s)
                           ORDER BY created_at, id LIMIT %s""",
            [thread_id, user_id, ts, last_id, limit + 1],
        )
    else:
        rows = db.all(
            f"""SELECT {MESSAGE_COLUMNS} FROM messages WHERE thread_id = %s AND user_id = %s
                           ORDER BY created_at, id LIMIT %s""",
            [thread_id, user_id, limit + 1],
        )
    return page(rows, limit, "created_at")


def insert_answer(tx: Tx, thread_id: str, user_id: str, run_id: str, content: str, metadata: dict[str, Any]) -> str:
    """The run's assistant message; a second attempt finds the first (one answer per run, by unique index)."""
    new_id = tx.scalar(
        """INSERT INTO messages (thread_id, user_id, role, content, run_id, metadata)
           VALUES (%s, %s, 'assistant', %s, %s, %s)
           ON CONFLICT (run_id) WHERE role = 'assistant' DO NOTHING RETURNING id::text""",
        [thread_id, user_id, content, run_id, json.dumps(metadata, default=str)],
    )
    if new_id is not None:
        return str(new_id)
    return str(tx.scalar("SELECT id::text FROM messages WHERE run_id = %s AND role = 'assistant'", [run_id]))
