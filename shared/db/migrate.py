"""Versioned SQL migrations, applied under a PostgreSQL advisory lock.

``python -m shared.db.migrate`` is the entry point of the Cloud Run migration job. It creates the database
if it does not exist (serialised by an advisory lock in the maintenance database), then applies each
pending ``migrations/NNNN_name.sql`` in its own transaction, recording it in ``schema_migrations``.
Any number of copies may run at once: one applies each migration exactly once, the others wait and
find nothing left to do (scenario 3). Services never migrate; they call :func:`check_schema`.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.config import CommonSection, ConfigError, DatabaseSection, load_settings
from shared.db.connect import MISSING_DATABASE, Connector, sqlstate
from shared.errors import NetraError

log = logging.getLogger("migrate")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Arbitrary but fixed 64-bit keys: one for "create database", one for "apply migrations".
CREATE_LOCK_KEY = 7_270_001
MIGRATE_LOCK_KEY = 7_270_002


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def available_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", path.name)
        if not match:
            raise ValueError(f"migration file {path.name!r} must be named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migration files share a version number: {versions}")
    return found


def required_version() -> int:
    """The schema version this code needs: the newest migration shipped with it."""
    migrations = available_migrations()
    return migrations[-1].version if migrations else 0


class SchemaTooOld(NetraError):
    reason_code = "schema_too_old"

    def __init__(self, current: int, required: int, missing: list[str]) -> None:
        self.current, self.required, self.missing = current, required, missing
        # Migration labels are part of the shipped code, not internals: health answers name them (scenario 4).
        self.public_details = {"missing_migrations": list(missing)}
        super().__init__(
            f"database schema is at version {current}, this code needs {required}: "
            f"missing migration(s) {', '.join(missing)}; run the migration job (python -m shared.db.migrate)"
        )


def applied_version(cursor: Any) -> int:
    cursor.execute("SELECT to_regclass('public.schema_migrations') IS NOT NULL")
    if not cursor.fetchone()[0]:
        return 0
    cursor.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
    return int(cursor.fetchone()[0])


def check_schema(conn: Any, required: int | None = None) -> int:
    """Raise SchemaTooOld naming the missing migrations; return the current version otherwise."""
    needed = required_version() if required is None else required
    cur = conn.cursor()
    current = applied_version(cur)
    conn.rollback()
    if current < needed:
        missing = [m.label for m in available_migrations() if current < m.version <= needed]
        raise SchemaTooOld(current, needed, missing or [f"{needed:04d}"])
    return current


def _ensure_database(connector: Connector) -> bool:
    """Create the target database if missing. Returns True if this call created it."""
    name = connector.database_name
    try:
        connector.connect().close()
        return False
    except Exception as exc:
        if sqlstate(exc) != MISSING_DATABASE:
            raise
    admin = connector.connect(database="postgres")
    admin.autocommit = True
    try:
        cur = admin.cursor()
        cur.execute("SELECT pg_advisory_lock(%s)", (CREATE_LOCK_KEY,))
        try:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone():
                return False
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"refusing to create database with unusual name {name!r}")
            cur.execute(f'CREATE DATABASE "{name}"')
            log.info("created database", extra={"database": name})
            return True
        finally:
            cur.execute("SELECT pg_advisory_unlock(%s)", (CREATE_LOCK_KEY,))
    finally:
        admin.close()


def migrate(connector: Connector, target: int | None = None) -> list[str]:
    """Apply pending migrations up to ``target`` (default: all). Returns the labels this call applied."""
    _ensure_database(connector)
    conn = connector.connect()
    conn.autocommit = True
    applied: list[str] = []
    try:
        cur = conn.cursor()
        cur.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK_KEY,))
        try:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur.execute("SELECT version, checksum FROM schema_migrations")
            done = {int(v): c for v, c in cur.fetchall()}
            for migration in available_migrations():
                if target is not None and migration.version > target:
                    break
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        log.warning("applied migration differs from its file", extra={"migration": migration.label})
                    continue
                conn.autocommit = False
                try:
                    cur.execute(migration.sql)
                    cur.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                    conn.commit()
                except Exception:
                    conn.rollback()
                    raise
                finally:
                    conn.autocommit = True
                applied.append(migration.label)
                log.info("applied migration", extra={"migration": migration.label})
        finally:
            cur.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK_KEY,))
    finally:
        conn.close()
    return applied


class MigrateSettings(CommonSection, DatabaseSection):
    pass


def main(argv: list[str] | None = None) -> int:
    from shared.logging import configure_logging

    parser = argparse.ArgumentParser(prog="python -m shared.db.migrate", description=__doc__.split("\n")[0])
    parser.add_argument("--target", type=int, help="stop after this version")
    parser.add_argument("--status", action="store_true", help="print applied and pending versions only")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(MigrateSettings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging("migrate", settings.log_level, settings.log_format, settings.google_cloud_project)
    connector = Connector(settings, "netra-migrate")
    try:
        if args.status:
            conn = connector.connect()
            current = applied_version(conn.cursor())
            conn.close()
            pending = [m.label for m in available_migrations() if m.version > current]
            print(f"schema version {current}; pending: {', '.join(pending) or 'none'}")
            return 0
        applied = migrate(connector, args.target)
    except Exception as exc:
        from shared.db.database import classify

        log.error("migration failed: %s", classify(exc))
        return 1
    finally:
        connector.close()
    print(f"applied: {', '.join(applied) or 'nothing (up to date)'}; schema version {required_version()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
