"""The Cloud SQL path up to its narrow seam.

The Cloud SQL Python Connector needs the Cloud SQL Admin API (certificates, instance metadata), which cannot run
here. The seam is the connector object itself: a stand-in records how it was built and what each ``connect`` asked
for, and answers with a real pg8000 connection to the test PostgreSQL. Everything on our side of it (settings,
the lazy refresh, IAM login, the pool, timeouts) runs for real.
"""

from __future__ import annotations

import sys
import types
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pg8000.dbapi
import pytest

from shared.config import DatabaseSection, load_settings
from shared.db.connect import parse_database_url
from shared.db.database import Database


class RecordingConnector:
    """Stands in for google.cloud.sql.connector.Connector; answers with a real connection."""

    built: list[dict[str, Any]] = []
    connects: list[tuple[str, str, dict[str, Any]]] = []
    target: Any = None

    def __init__(self, **kwargs: Any) -> None:
        RecordingConnector.built.append(kwargs)
        self.closed = False

    def connect(self, instance: str, driver: str, **kwargs: Any) -> Any:
        RecordingConnector.connects.append((instance, driver, kwargs))
        target = RecordingConnector.target
        return pg8000.dbapi.connect(
            user=target.user,
            password=target.password,
            host=target.host,
            port=target.port,
            database=kwargs["db"],
            timeout=kwargs["timeout"],
            startup_params=kwargs["startup_params"],
        )

    async def connect_async(self, instance: str, driver: str, **kwargs: Any) -> Any:
        return self.connect(instance, driver, **kwargs)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def cloud_connector(shared_db_url: str, monkeypatch: pytest.MonkeyPatch) -> type[RecordingConnector]:
    import google.cloud.sql.connector as real

    fake = types.ModuleType("google.cloud.sql.connector")
    fake.Connector = RecordingConnector  # type: ignore[attr-defined]
    fake.IPTypes = real.IPTypes  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "google.cloud.sql.connector", fake)
    RecordingConnector.built, RecordingConnector.connects = [], []
    RecordingConnector.target = parse_database_url(shared_db_url)
    return RecordingConnector


def cloud_settings(**env: str) -> DatabaseSection:
    database = RecordingConnector.target.database
    return load_settings(
        DatabaseSection,
        {
            "NETRA_DOTENV": "/nonexistent/.env",
            "NETRA_ENV": "test",
            "CLOUD_SQL_INSTANCE": "proj:europe-west1:netra",
            "DB_NAME": database,
            "DB_USER": "netra-agent@proj.iam",
            **env,
        },
    )


def test_scenario_30_cloud_sql_connector_refreshes_lazily_and_is_built_once(
    cloud_connector: type[RecordingConnector],
) -> None:
    """Scenario 30: CPU is throttled outside requests, so the connector must refresh its certificate lazily
    (on connect), not in a background task; it is built once per instance however many connections open
    concurrently (scenario 2), with IAM login and the private IP by default."""
    db = Database(cloud_settings(DB_IAM_AUTH="true", DB_POOL_SIZE="4"), "agent-api")
    try:
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(lambda _: db.scalar("SELECT 1"), range(32))) == [1] * 32
        assert len(cloud_connector.built) == 1, cloud_connector.built
        built = cloud_connector.built[0]
        assert built["refresh_strategy"] == "lazy"
        assert built["enable_iam_auth"] is True
        assert built["ip_type"] == sys.modules["google.cloud.sql.connector"].IPTypes.PRIVATE
        instance, driver, kwargs = cloud_connector.connects[0]
        assert (instance, driver) == ("proj:europe-west1:netra", "pg8000")
        assert kwargs["user"] == "netra-agent@proj.iam" and "password" not in kwargs, "IAM login sends no password"
        assert 1 <= len(cloud_connector.connects) <= 4, "the pool bounds connections"
    finally:
        db.close()


def test_connector_connections_get_statement_timeout_and_password_login(
    cloud_connector: type[RecordingConnector],
) -> None:
    """Scenario 8 on the Cloud SQL path: the connector's TLS socket comes without a timeout, so ours sets one;
    statement_timeout is sent at login. Password login (no IAM) passes the secret to the connector only."""
    password = RecordingConnector.target.password or ""
    db = Database(cloud_settings(DB_PASSWORD=password, DB_STATEMENT_TIMEOUT_MS="1500", DB_IP_TYPE="public"), "auth")
    try:
        assert db.scalar("SHOW statement_timeout") == "1500ms"
        assert cloud_connector.connects[0][2].get("password") == password
        assert cloud_connector.built[0]["ip_type"] == sys.modules["google.cloud.sql.connector"].IPTypes.PUBLIC
        with db.connection() as conn:
            assert conn._usock.gettimeout() == db.connector.read_timeout_s
    finally:
        db.close()
