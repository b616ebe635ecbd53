"""Operator commands on users: ``python -m functions.auth.admin set-plan EMAIL PLAN`` and ``show EMAIL``.

Reads DATABASE_URL (or the Cloud SQL settings) like every service. A plan change is enforced by the agent API at
the user's next post (it reads the stored plan); the ``plan`` claim of access tokens follows at the next refresh
(docs/AUTH.md, Plans). Exit codes: 0 done, 1 no user with that email, 2 bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from shared.config import CommonSection, ConfigError, DatabaseSection, load_settings
from shared.plans import PLANS


class AdminSettings(CommonSection, DatabaseSection):
    pass


def _connect() -> Any:
    from shared.db.connect import Connector

    settings = load_settings(AdminSettings)
    return Connector(settings, "netra-admin")


def set_plan(conn: Any, email: str, plan: str) -> tuple[str, str] | None:
    """(previous plan, new plan) of the user with this email, or None when there is none."""
    cursor = conn.cursor()
    cursor.execute(
        """UPDATE users AS u SET plan = %s,
                  plan_changed_at = CASE WHEN u.plan = %s THEN u.plan_changed_at ELSE now() END
             FROM (SELECT id, plan FROM users WHERE lower(email) = lower(%s) FOR UPDATE) AS old
            WHERE u.id = old.id
        RETURNING old.plan""",
        (plan, plan, email),
    )
    row = cursor.fetchone()
    conn.commit()
    return (row[0], plan) if row else None


def show(conn: Any, email: str) -> dict[str, Any] | None:
    cursor = conn.cursor()
    cursor.execute("SELECT id::text, email, plan, plan_changed_at FROM users WHERE lower(email) = lower(%s)", (email,))
    row = cursor.fetchone()
    conn.commit()
    if row is None:
        return None
    return {"id": row[0], "email": row[1], "plan": row[2], "plan_changed_at": row[3]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m functions.auth.admin", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    set_cmd = commands.add_parser("set-plan", help="set a user's plan")
    set_cmd.add_argument("email", help="the user's email (case-insensitive)")
    set_cmd.add_argument("plan", choices=PLANS, help="the new plan")
    show_cmd = commands.add_parser("show", help="print a user's id, email and plan")
    show_cmd.add_argument("email")
    args = parser.parse_args(argv)  # unknown plan or command: usage and exit 2

    try:
        connector = _connect()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        conn = connector.connect()
        try:
            if args.command == "set-plan":
                changed = set_plan(conn, args.email, args.plan)
                if changed is None:
                    print(f"error: no user with email {args.email!r}", file=sys.stderr)
                    return 1
                before, after = changed
                note = "unchanged" if before == after else f"was {before}"
                print(f"{args.email}: plan {after} ({note})")
                return 0
            user = show(conn, args.email)
            if user is None:
                print(f"error: no user with email {args.email!r}", file=sys.stderr)
                return 1
            changed_at = user["plan_changed_at"].isoformat() if user["plan_changed_at"] else "never"
            print(f"{user['email']} id={user['id']} plan={user['plan']} plan_changed_at={changed_at}")
            return 0
        finally:
            conn.close()
    finally:
        connector.close()


if __name__ == "__main__":
    sys.exit(main())
