"""`python -m shared.deploy grant-db` (the second step of the migration job) on a real PostgreSQL: the
services' database users get DML on every table, present and future, and no DDL."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from urllib.parse import urlparse, urlunparse

import pg8000.dbapi
import pytest

from shared.config import REPO_ROOT
from shared.db.connect import parse_database_url


def _connect(url: str, user: str | None = None, password: str | None = None) -> pg8000.dbapi.Connection:
    t = parse_database_url(url)
    return pg8000.dbapi.connect(
        user=user or t.user,
        password=password if user else t.password,
        host=t.host,
        port=t.port,
        database=t.database,
        timeout=10,
    )


def _run_grant(db_url: str, roles: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NETRA_ENV": "test", "DATABASE_URL": db_url, "DB_APP_ROLES": roles}
    env.pop("CLOUD_SQL_INSTANCE", None)
    return subprocess.run(
        [sys.executable, "-m", "shared.deploy", "grant-db"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def service_role(migrated_db_url: str) -> tuple[str, str]:
    """A login role named like a Cloud SQL IAM service-account user (needs identifier quoting)."""
    role = f"netra-auth-{uuid.uuid4().hex[:6]}@proj.iam"
    password = uuid.uuid4().hex
    admin = _connect(migrated_db_url)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
    admin.close()
    return role, password


def test_grant_gives_dml_on_present_and_future_tables_and_no_ddl(
    migrated_db_url: str, service_role: tuple[str, str]
) -> None:
    role, password = service_role
    conn = _connect(migrated_db_url, role, password)
    with pytest.raises(pg8000.dbapi.DatabaseError):
        conn.cursor().execute("SELECT count(*) FROM users")  # before the grant: denied
    conn.rollback()

    result = _run_grant(migrated_db_url, f"{role}")
    assert result.returncode == 0, result.stderr
    assert role in result.stdout

    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM users")
    assert cur.fetchone()[0] >= 0
    cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'users'")
    assert cur.fetchall()
    conn.rollback()
    with pytest.raises(pg8000.dbapi.DatabaseError) as err:
        conn.cursor().execute("CREATE TABLE sneaky (id int)")
    assert "permission denied" in str(err.value)
    conn.rollback()

    # A table the owner creates in a later migration is usable without running grant-db again.
    admin = _connect(migrated_db_url)
    admin.cursor().execute("CREATE TABLE later_table (id serial PRIMARY KEY, note text)")
    admin.commit()
    admin.close()
    cur = conn.cursor()
    cur.execute("INSERT INTO later_table (note) VALUES ('x') RETURNING id")
    assert cur.fetchone()[0] == 1
    conn.commit()
    conn.close()


def test_grant_is_idempotent_and_refuses_unknown_roles(migrated_db_url: str, service_role: tuple[str, str]) -> None:
    role, _ = service_role
    assert _run_grant(migrated_db_url, role).returncode == 0
    assert _run_grant(migrated_db_url, role).returncode == 0
    missing = _run_grant(migrated_db_url, f"{role},netra-ghost@proj.iam")
    assert missing.returncode == 1
    assert "db_role_missing" in missing.stderr and "netra-ghost@proj.iam" in missing.stderr


def test_grant_reports_missing_configuration_with_variable_names(migrated_db_url: str) -> None:
    """Scenario 24: the missing variable is named with what it should hold; no password is echoed."""
    parsed = urlparse(migrated_db_url)
    env = {**os.environ, "NETRA_ENV": "test", "DATABASE_URL": urlunparse(parsed)}
    env.pop("DB_APP_ROLES", None)
    result = subprocess.run(
        [sys.executable, "-m", "shared.deploy", "grant-db"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "DB_APP_ROLES" in result.stderr and "comma-separated database users" in result.stderr
    if parsed.password:
        assert parsed.password not in result.stderr
