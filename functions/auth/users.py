"""Users and identities in Cloud SQL: one user per verified email, one identity per (provider, subject)."""

from __future__ import annotations

from typing import Any

from shared.plans import DEFAULT_PLAN

USER_COLUMNS = "u.id, u.email, u.name, u.permissions, u.plan"


def public_user(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "email": row["email"],
        "name": row.get("name"),
        "permissions": list(row["permissions"]),
        "plan": row.get("plan") or DEFAULT_PLAN,
    }


def upsert_by_email(db: Any, email: str, name: str | None) -> dict[str, Any]:
    """Dev login: the user with this email, created on first use."""
    return db.one(
        "INSERT INTO users AS u (email, name, last_login_at) VALUES (%s, %s, now()) "
        "ON CONFLICT (email) DO UPDATE SET last_login_at = now(), name = COALESCE(EXCLUDED.name, u.name) "
        f"RETURNING {USER_COLUMNS}",
        (email.lower(), name),
    )


def link_identity(db: Any, provider: str, subject: str, email: str, name: str | None) -> dict[str, Any]:
    """The user behind a provider identity whose email the provider has verified.

    A known (provider, subject) keeps its user even if the email changed at the provider; a new identity
    joins the user with the same email (linking Google and GitHub), or creates one. Concurrent first
    sign-ins converge on one user and one identity through the unique keys.
    """
    email = email.lower()
    with db.transaction() as tx:
        sql = (
            f"SELECT {USER_COLUMNS} FROM identities i JOIN users u ON u.id = i.user_id "
            "WHERE i.provider = %s AND i.subject = %s"
        )
        row = tx.one(sql, (provider, subject))
        if row is None:
            user = tx.one(
                "INSERT INTO users AS u (email, name) VALUES (%s, %s) "
                "ON CONFLICT (email) DO UPDATE SET name = COALESCE(u.name, EXCLUDED.name) RETURNING u.id",
                (email, name),
            )
            tx.execute(
                "INSERT INTO identities (provider, subject, user_id, email) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (provider, subject) DO NOTHING",
                (provider, subject, user["id"], email),
            )
            row = tx.one(sql, (provider, subject))
        tx.execute("UPDATE users SET last_login_at = now() WHERE id = %s", (row["id"],))
        tx.execute(
            "UPDATE identities SET email = %s WHERE provider = %s AND subject = %s AND email <> %s",
            (email, provider, subject, email),
        )
        return row


def get_user(db: Any, user_id: str) -> dict[str, Any] | None:
    return db.one(f"SELECT {USER_COLUMNS}, u.created_at FROM users u WHERE u.id::text = %s", (user_id,))


def identities_of(db: Any, user_id: str) -> list[dict[str, Any]]:
    return db.all(
        "SELECT provider, email, created_at FROM identities WHERE user_id::text = %s ORDER BY created_at", (user_id,)
    )
