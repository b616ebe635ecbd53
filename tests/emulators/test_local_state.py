"""Local state is coherent between `make run`s: the database and Firestore both start empty (README, Local stack)."""

from __future__ import annotations

from pathlib import Path

import pg8000.dbapi
import pytest

from emulators.postgres import DATABASE, PASSWORD, SUPERUSER
from emulators.stack import PROJECT, Stack


def start(only: set[str]) -> Stack:
    stack = Stack(only, sink=None)
    stack.up()
    return stack


def test_a_restarted_stack_has_neither_the_old_rows_nor_the_old_documents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: PostgreSQL kept last run's data while Firestore restarted empty, so a finished run had no events."""
    monkeypatch.setenv("NETRA_LOCAL_DIR", str(tmp_path / "local"))
    monkeypatch.setenv("NETRA_DISCOVERY_DIR", str(tmp_path / "disc"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("FIRESTORE_COLLECTION_PREFIX", raising=False)
    from google.cloud import firestore

    stack = start({"postgres", "firestore"})
    try:
        assert stack.postgres is not None
        conn = pg8000.dbapi.connect(
            user=SUPERUSER, password=PASSWORD, host="127.0.0.1", port=stack.postgres.port, database=DATABASE
        )
        conn.autocommit = True
        conn.cursor().execute("CREATE TABLE last_run (id int)")
        conn.close()
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", stack.urls["firestore"])
        client = firestore.Client(project=PROJECT)
        client.collection("runs").document("r1").set({"status": "completed"})
        assert client.collection("runs").document("r1").get().exists
        client.close()
        first_data_dir = stack.postgres.data_dir
    finally:
        stack.down()

    stack = start({"postgres", "firestore"})
    try:
        assert stack.postgres is not None and stack.postgres.data_dir == first_data_dir  # the same server, kept
        conn = pg8000.dbapi.connect(
            user=SUPERUSER, password=PASSWORD, host="127.0.0.1", port=stack.postgres.port, database=DATABASE
        )
        cur = conn.cursor()
        cur.execute("SELECT to_regclass('public.last_run') IS NULL, to_regclass('public.schema_migrations') IS NULL")
        gone, unmigrated = cur.fetchone()
        conn.close()
        assert gone, "the database kept last run's table while Firestore started empty"
        assert not unmigrated, "the emptied database is migrated again"
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", stack.urls["firestore"])
        client = firestore.Client(project=PROJECT)
        assert not client.collection("runs").document("r1").get().exists
        client.close()
    finally:
        stack.down()
