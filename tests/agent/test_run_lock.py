"""The worker's run lock on a real PostgreSQL: a released lock's connection serves the next run (issue 18: no new
connection before a warm run's first event) and never carries a lock, a setting or a dead socket into it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from functions.agent.store import runs as run_store
from functions.agent.worker.handler import LockConnections, RunLock
from shared.db import Database
from shared.db.database import Tx
from shared.db.migrate import MigrateSettings
from tests.agent.conftest import Sql


@pytest.fixture
def db(shared_db_url: str) -> Iterator[Database]:
    database = Database(MigrateSettings.model_validate({"database_url": shared_db_url}))
    yield database
    database.close()


def _pid(conn: object) -> int:
    cur = conn.cursor()  # type: ignore[attr-defined]
    cur.execute("SELECT pg_backend_pid()")
    return cur.fetchone()[0]


def _advisory_locks(conn: object) -> int:
    """How many advisory locks ``conn``'s session holds."""
    cur = conn.cursor()  # type: ignore[attr-defined]
    cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
    return cur.fetchone()[0]


def _free_elsewhere(db: Database, key: int) -> bool:
    """Whether another session can take ``key`` (it then lets it go again)."""
    conn = db.open()
    try:
        cur = conn.cursor()
        cur.execute("SELECT pg_try_advisory_lock(%s)", (key,))
        free = cur.fetchone()[0]
        if free:
            cur.execute("SELECT pg_advisory_unlock(%s)", (key,))
        conn.commit()
        return free
    finally:
        conn.close()


def test_a_released_lock_connection_serves_the_next_run_without_its_lock(db: Database) -> None:
    spares = LockConnections(2)
    first = RunLock(db, str(uuid.uuid4()), spares)
    assert first.try_acquire()
    pid = _pid(first.conn)
    assert not _free_elsewhere(db, first.key), "the run is held"
    first.release()
    assert _free_elsewhere(db, first.key), "released: another worker can take the run at once"

    second = RunLock(db, str(uuid.uuid4()), spares)
    assert second.try_acquire()
    try:
        assert _pid(second.conn) == pid, "the kept connection, not a new one"
        assert _advisory_locks(second.conn) == 1, "only the new run's lock"
        cur = second.conn.cursor()
        cur.execute("SHOW tcp_keepalives_idle")
        assert cur.fetchone()[0] in ("20", "20s"), "the session keeps its keepalive settings"
    finally:
        second.release()


def test_a_run_that_ended_in_an_error_does_not_hand_its_connection_on(db: Database) -> None:
    spares = LockConnections(2)
    lock = RunLock(db, str(uuid.uuid4()), spares)
    assert lock.try_acquire()
    lock.release(keep=False)
    assert spares.take() is None
    assert _free_elsewhere(db, lock.key)


def test_a_kept_connection_that_died_while_idle_is_replaced(db: Database) -> None:
    spares = LockConnections(2)
    first = RunLock(db, str(uuid.uuid4()), spares)
    assert first.try_acquire()
    pid = _pid(first.conn)
    first.release()
    killer = db.open()
    try:
        killer.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))
        killer.commit()
    finally:
        killer.close()
    second = RunLock(db, str(uuid.uuid4()), spares)
    assert second.try_acquire(), "a new connection takes the run"
    try:
        assert _pid(second.conn) != pid
    finally:
        second.release()


def test_a_run_held_elsewhere_is_refused_and_the_connection_kept_without_a_lock(db: Database) -> None:
    spares = LockConnections(2)
    run_id = str(uuid.uuid4())
    holder = RunLock(db, run_id, None)
    assert holder.try_acquire()
    try:
        duplicate = RunLock(db, run_id, spares)
        assert not duplicate.try_acquire()
        kept = spares.take()
        assert kept is not None
        assert _advisory_locks(kept) == 0
        kept.close()
    finally:
        holder.release()
    assert _free_elsewhere(db, holder.key)


def test_no_more_connections_are_kept_than_runs_can_hold(db: Database) -> None:
    spares = LockConnections(1)
    locks = [RunLock(db, str(uuid.uuid4()), spares) for _ in range(2)]
    for lock in locks:
        assert lock.try_acquire()
    pids = [_pid(lock.conn) for lock in locks]
    for lock in locks:
        lock.release()
    kept = spares.take()
    assert kept is not None and spares.take() is None
    assert _pid(kept) == pids[0]
    kept.close()


def test_claim_is_one_statement_on_the_lock_connection(migrated_db_url: str, sql: Sql) -> None:
    """The claim runs on the lock's autocommit connection: a queued run becomes running (attempt 1), a running
    one is taken over (attempt 2, previous status `running`), a finished one is not claimed."""
    database = Database(MigrateSettings.model_validate({"database_url": migrated_db_url}))
    try:
        request = sql.seed_run()
        lock = RunLock(database, request.run_id, LockConnections(1))
        assert lock.try_acquire()
        try:
            tx = Tx(lock.conn)
            statements: list[str] = []
            execute = tx.cursor.execute
            tx.cursor.execute = lambda sql_text, params=(): (statements.append(sql_text), execute(sql_text, params))[1]
            first = run_store.claim(tx, request.run_id, "worker-a")
            assert len(statements) == 1, "one statement, so one round trip on the autocommit lock connection"
            assert first is not None
            assert (first["previous_status"], first["status"], first["attempt"]) == ("queued", "running", 1)
            assert first["claimed_by"] == "worker-a" and first["started_at"] is not None
            again = run_store.claim(Tx(lock.conn), request.run_id, "worker-b")
            assert again is not None
            assert (again["previous_status"], again["attempt"], again["claimed_by"]) == ("running", 2, "worker-b")
            assert again["started_at"] == first["started_at"], "started_at is kept on a takeover"
            sql.all("UPDATE runs SET status = 'completed' WHERE id = %s", (request.run_id,))
            assert run_store.claim(Tx(lock.conn), request.run_id, "worker-c") is None
            assert sql.run(request.run_id)["attempt"] == 2, "a finished run is left alone"
            assert run_store.claim(Tx(lock.conn), str(uuid.uuid4()), "worker-c") is None, "an unknown run"
        finally:
            lock.release()
    finally:
        database.close()
