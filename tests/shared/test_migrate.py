"""Migrations on a real PostgreSQL: concurrent runners, database creation, schema checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pg8000.dbapi
import pytest

from emulators.postgres import EmbeddedPostgres
from shared.config import REPO_ROOT
from shared.db.connect import Connector, parse_database_url, sqlstate
from shared.db.migrate import MigrateSettings, SchemaTooOld, available_migrations, check_schema, migrate


def connect(url: str):  # noqa: ANN201
    t = parse_database_url(url)
    return pg8000.dbapi.connect(user=t.user, password=t.password, host=t.host, port=t.port, database=t.database)


@pytest.mark.parametrize("transport", ["tcp", "unix"])
@pytest.mark.parametrize("copies", [8, 32])
def test_scenarios_1_3_racing_migrators_on_a_fresh_server_apply_each_migration_once(
    pg_server: EmbeddedPostgres, tmp_path: Path, copies: int, transport: str
) -> None:
    """Scenarios 1 and 3: COPIES migration jobs released together by a start barrier (so they always race)
    against a server where the database does not exist yet: it is created once, each migration is applied
    exactly once, and every copy exits 0. Over TCP, where a refused connection's FATAL was hidden by pg8000's
    "network error" from close(), and over the server's Unix socket."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = pg_server.url_for(name) if transport == "tcp" else pg_server.socket_url_for(name)
    env = {**os.environ, "DATABASE_URL": url, "NETRA_ENV": "test", "LOG_FORMAT": "json"}
    fleet = subprocess.run(
        [sys.executable, "-m", "tests.shared.migrator_fleet", str(copies), str(tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    logs = [path.read_text() for path in sorted(tmp_path.glob("*.log"))]
    assert fleet.returncode == 0, fleet.stderr
    assert json.loads(fleet.stdout)["exit_codes"] == [0] * copies, "\n".join(logs)
    combined = "\n".join(logs)
    assert combined.count('"created database"') == 1, combined
    for migration in available_migrations():
        assert combined.count(f'"migration": "{migration.label}"') == 1, combined
    conn = connect(pg_server.url_for(name))
    cur = conn.cursor()
    cur.execute("SELECT version FROM schema_migrations ORDER BY version")
    assert [r[0] for r in cur.fetchall()] == [m.version for m in available_migrations()]
    conn.close()


def test_scenarios_1_3_refused_connection_keeps_its_sqlstate_when_close_fails(pg_server: EmbeddedPostgres) -> None:
    """Scenarios 1 and 3: the server refuses a connection to a missing database with FATAL 3D000 and closes its
    end; pg8000's close() then often fails with InterfaceError("network error") (over the Unix socket in most
    tries here), hiding the FATAL. The SQLSTATE must still be found, or the migrator never creates the database."""
    connector = Connector(MigrateSettings.model_validate({"database_url": pg_server.socket_url_for("t_missing")}))
    states = []
    for _ in range(30):
        with pytest.raises(Exception) as info:
            connector.connect()
        states.append(sqlstate(info.value))
    assert states == ["3D000"] * 30


def test_rerun_is_a_no_op(migrated_db_url: str) -> None:
    connector = Connector(MigrateSettings.model_validate({"database_url": migrated_db_url}))
    assert migrate(connector) == []
    connector.close()


def test_scenario_4_old_schema_names_the_missing_migration(fresh_db_url: str) -> None:
    """Scenario 4: the schema is older than the code needs: the check says which migration is missing."""
    connector = Connector(MigrateSettings.model_validate({"database_url": fresh_db_url}))
    migrate(connector, target=0)  # database created, nothing applied
    conn = connector.connect()
    with pytest.raises(SchemaTooOld) as info:
        check_schema(conn)
    first = available_migrations()[0].label
    assert info.value.current == 0 and first in str(info.value) and "shared.db.migrate" in str(info.value)
    conn.close()
    migrate(connector)
    conn = connector.connect()
    assert check_schema(conn) == available_migrations()[-1].version
    conn.close()
    connector.close()


def test_migration_failure_rolls_back_and_reports(fresh_db_url: str, tmp_path, monkeypatch) -> None:
    from shared.db import migrate as migrate_module

    (tmp_path / "0001_good.sql").write_text("CREATE TABLE a (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE b (id int); SELECT * FROM missing_table;")
    monkeypatch.setattr(migrate_module, "available_migrations", lambda: available_migrations(tmp_path))
    connector = Connector(MigrateSettings.model_validate({"database_url": fresh_db_url}))
    with pytest.raises(Exception, match="missing_table"):
        migrate(connector)
    conn = connector.connect()
    cur = conn.cursor()
    cur.execute("SELECT version FROM schema_migrations")
    assert [r[0] for r in cur.fetchall()] == [1], "the failed migration must not be recorded"
    cur.execute("SELECT to_regclass('public.b')")
    assert cur.fetchone()[0] is None, "the failed migration's statements must be rolled back"
    conn.close()
    connector.close()
