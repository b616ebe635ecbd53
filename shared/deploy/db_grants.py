"""Grant the services' IAM database users what they need, after the migrations ran.

Run by the migration job right after ``python -m shared.db.migrate`` (as the schema owner):
``python -m shared.deploy grant-db``. ``DB_APP_ROLES`` lists the database users of the services
(comma-separated; with IAM database authentication, service-account e-mails without
``.gserviceaccount.com``). Each gets CONNECT, USAGE on the schema, DML on every table and sequence, and the
same on tables the owner creates later (default privileges). No DDL: only the migration job changes the schema.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import Field, field_validator

from shared.config import CommonSection, DatabaseSection
from shared.deploy.errors import DeployError

log = logging.getLogger("deploy.grants")

SCHEMA = "public"


class GrantSettings(CommonSection, DatabaseSection):
    db_app_roles: str = Field(
        description="comma-separated database users of the services, e.g. netra-auth@proj.iam,netra-agent-api@proj.iam"
    )

    @field_validator("db_app_roles")
    @classmethod
    def _roles(cls, value: str) -> str:
        roles = [r.strip() for r in value.split(",") if r.strip()]
        if not roles:
            raise ValueError("must list at least one database user")
        for role in roles:
            if len(role) > 63 or '"' in role or "\x00" in role:
                raise ValueError(f"{role!r} is not a valid PostgreSQL role name")
        return ",".join(roles)

    @property
    def roles(self) -> list[str]:
        return self.db_app_roles.split(",")


def quote_ident(name: str) -> str:
    """PostgreSQL identifier quoting; role names such as svc@proj.iam need it."""
    return '"' + name.replace('"', '""') + '"'


def grant_statements(role: str, database: str) -> list[str]:
    r, db, s = quote_ident(role), quote_ident(database), quote_ident(SCHEMA)
    return [
        f"GRANT CONNECT ON DATABASE {db} TO {r}",
        f"GRANT USAGE ON SCHEMA {s} TO {r}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r}",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {s} TO {r}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {r}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {r}",
    ]


def grant(conn: Any, roles: list[str], database: str) -> list[str]:
    """Apply the grants in one transaction; every role must exist. Returns the roles granted."""
    cur = conn.cursor()
    cur.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (roles,))
    existing = {row[0] for row in cur.fetchall()}
    missing = [r for r in roles if r not in existing]
    if missing:
        conn.rollback()
        raise DeployError(
            "db_role_missing",
            f"database user(s) {', '.join(missing)} do not exist; Terraform creates them "
            "(google_sql_user type CLOUD_IAM_SERVICE_ACCOUNT) before the migration job runs",
            exit_code=1,
        )
    for role in roles:
        for statement in grant_statements(role, database):
            cur.execute(statement)
    conn.commit()
    return roles


def main() -> int:
    import sys

    from shared.config import ConfigError, load_settings
    from shared.db.connect import Connector
    from shared.logging import configure_logging

    try:
        settings = load_settings(GrantSettings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging("grant-db", settings.log_level, settings.log_format, settings.google_cloud_project)
    connector = Connector(settings, "netra-grant-db")
    try:
        conn = connector.connect()
        try:
            granted = grant(conn, settings.roles, connector.database_name)
        finally:
            conn.close()
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        from shared.db.database import classify

        print(f"error: db_grant_failed: {classify(exc)}", file=sys.stderr)
        return 1
    finally:
        connector.close()
    log.info("granted", extra={"roles": ",".join(granted)})
    print(f"granted DML on schema {SCHEMA} to: {', '.join(granted)}")
    return 0
