"""The services' database layer through the real, unmodified Cloud SQL Python Connector (scenarios 6 and 30).

The connector's two Google sides (the Cloud SQL Admin API with its ephemeral certificates, and the instance's
mTLS proxy on port 3307) are the local stand-in of emulators/cloudsql.py, which forwards to the test PostgreSQL;
credentials come from google.auth's ordinary ADC path with a token endpoint on the stand-in. Everything else,
the connector included, is the real code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pg8000.dbapi
import pytest
from google.auth.exceptions import DefaultCredentialsError

from emulators.cloudsql import CloudSqlStandIn
from emulators.postgres import EmbeddedPostgres
from shared.config import DatabaseSection, load_settings
from shared.db.connect import Connector, parse_database_url
from shared.db.database import Database, DatabaseUnavailable

IAM_USER = "netra-agent@proj.iam.gserviceaccount.com"  # the connector trims the suffix for PostgreSQL


@pytest.fixture(scope="module")
def standin(pg_server: EmbeddedPostgres, shared_db_url: str) -> Iterator[CloudSqlStandIn]:
    target = parse_database_url(shared_db_url)
    conn = pg8000.dbapi.connect(
        user=target.user, password=target.password, host=target.host, port=target.port, database=target.database
    )
    conn.autocommit = True
    role = IAM_USER.removesuffix(".gserviceaccount.com")
    cursor = conn.cursor()
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    if not cursor.fetchall():
        cursor.execute(f'CREATE ROLE "{role}" LOGIN')
    conn.close()
    server = CloudSqlStandIn(target.host, target.port, pg_server.socket_dir).start()
    yield server
    server.stop()


@pytest.fixture
def adc(standin: CloudSqlStandIn, monkeypatch: pytest.MonkeyPatch) -> CloudSqlStandIn:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", standin.credentials_file())
    standin.calls.clear()
    return standin


def settings(standin: CloudSqlStandIn, shared_db_url: str, **env: str) -> DatabaseSection:
    return load_settings(
        DatabaseSection,
        {
            "NETRA_DOTENV": "/nonexistent/.env",
            "NETRA_ENV": "test",
            "CLOUD_SQL_INSTANCE": standin.connection_name,
            "CLOUD_SQL_ADMIN_ENDPOINT": standin.admin_endpoint,
            "DB_NAME": parse_database_url(shared_db_url).database,
            **env,
        },
    )


def test_password_login_through_the_real_connector(adc: CloudSqlStandIn, shared_db_url: str) -> None:
    password = parse_database_url(shared_db_url).password or ""
    db = Database(settings(adc, shared_db_url, DB_USER="netra", DB_PASSWORD=password, DB_IP_TYPE="public"), "auth")
    try:
        assert db.scalar("SELECT current_user") == "netra"
        assert db.scalar("SHOW statement_timeout") == "15s", "start-up parameters pass through the connector"
        assert db.scalar("SELECT count(*) FROM schema_migrations") >= 1
        assert {"token", "connectSettings", "generateEphemeralCert", "proxy"} <= set(adc.calls), adc.calls
    finally:
        db.close()


def test_iam_login_through_the_real_connector(adc: CloudSqlStandIn, shared_db_url: str) -> None:
    """Scenario 30's IAM login: no password; the ephemeral certificate carries the login token."""
    db = Database(settings(adc, shared_db_url, DB_USER=IAM_USER, DB_IAM_AUTH="true", DB_IP_TYPE="private"), "agent")
    try:
        assert db.scalar("SELECT current_user") == IAM_USER.removesuffix(".gserviceaccount.com")
        assert adc.iam_serials, "the certificate was issued with an IAM login token"
    finally:
        db.close()


def _unavailable_within(db: Database, bound_s: float) -> DatabaseUnavailable:
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as info:
        db.scalar("SELECT 1")
    elapsed = time.monotonic() - started
    # Not a speed check: a bound far above the budget that a hang (minutes) cannot meet.
    assert elapsed < bound_s, f"the request waited {elapsed:.1f} s"
    assert info.value.status == 503 and int(info.value.headers["Retry-After"]) >= 1
    return info.value


@pytest.mark.parametrize("failure", ["admin_down", "admin_hangs", "proxy_down"])
def test_scenario_6_connector_failure_is_a_bounded_503(
    adc: CloudSqlStandIn, shared_db_url: str, pg_server: EmbeddedPostgres, failure: str
) -> None:
    """Scenario 6 on the Cloud SQL path: with the Admin API refusing or never answering, or the instance's
    proxy down, the caller gets 503 + Retry-After within the connect budget, not a hang (the connector's own
    connect has no limit and aiohttp waits 5 minutes)."""
    password = parse_database_url(shared_db_url).password or ""
    env = {"DB_USER": "netra", "DB_PASSWORD": password, "DB_CONNECT_TIMEOUT_S": "1", "DB_CONNECT_BUDGET_S": "1"}
    down = CloudSqlStandIn(adc.pg_host, adc.pg_port, pg_server.socket_dir).start()
    try:
        if failure == "admin_down":
            down.stop_admin()
        elif failure == "admin_hangs":
            down.hang_admin.set()
        else:
            down.stop_proxy()
        db = Database(settings(down, shared_db_url, **env), "agent")
        try:
            error = _unavailable_within(db, bound_s=20)
            assert error.code == "database_unavailable"
        finally:
            db.close()
    finally:
        down.stop()


def test_failed_connector_build_reuses_its_event_loop(
    standin: CloudSqlStandIn, shared_db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without credentials the connector cannot be built; each retry of the connect budget must not leave
    another event-loop thread behind."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    connector = Connector(settings(standin, shared_db_url, DB_USER="netra", DB_PASSWORD="x"))
    try:
        for _ in range(3):
            with pytest.raises(DefaultCredentialsError):
                connector.connect()
        assert sum(t.name == "cloud-sql-connector" and t.is_alive() for t in threading.enumerate()) == 1
    finally:
        connector.close()
