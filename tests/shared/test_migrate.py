"""Migrations on a real PostgreSQL: concurrent runners, database creation, schema checks."""

from __future__ import annotations

import os
import subprocess
import sys

import pg8000.dbapi
import pytest

from shared.config import REPO_ROOT
from shared.db.connect import Connector, parse_database_url
from shared.db.migrate import MigrateSettings, SchemaTooOld, available_migrations, check_schema, migrate


def connect(url: str):  # noqa: ANN201
    t = parse_database_url(url)
    return pg8000.dbapi.connect(user=t.user, password=t.password, host=t.host, port=t.port, database=t.database)


def test_scenario_3_eight_concurrent_migrators_apply_each_migration_once(fresh_db_url: str) -> None:
    """Scenario 3 (and 1): 8 copies of the migration job on an empty server: the database is created
    once, each migration is applied exactly once, all 8 exit 0."""
    env = {**os.environ, "DATABASE_URL": fresh_db_url, "NETRA_ENV": "test", "LOG_FORMAT": "json"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "shared.db.migrate"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(8)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, outputs
    combined = "\n".join(outputs)
    assert combined.count('"created database"') == 1, combined
    for migration in available_migrations():
        assert combined.count(f'"migration": "{migration.label}"') == 1, combined
    conn = connect(fresh_db_url)
    cur = conn.cursor()
    cur.execute("SELECT version FROM schema_migrations ORDER BY version")
    assert [r[0] for r in cur.fetchall()] == [m.version for m in available_migrations()]
    conn.close()


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
