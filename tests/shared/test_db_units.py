"""The database layer's logic in-process, without a database: URL parsing, error classification, the pool,
the connect retry and breaker, the Cloud SQL path's bounds, and the migration helpers.

Fast on purpose: the mutation run of shared/db (tests/mutation/modules.toml) runs this file first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pg8000.exceptions import DatabaseError, InterfaceError

from shared.db import connect as connect_module
from shared.db import database as database_module
from shared.db import migrate as migrate_module
from shared.db.connect import Connector, DirectTarget, date_in, parse_database_url, server_error, sqlstate
from shared.db.database import (
    Database,
    DatabaseUnavailable,
    FatalDatabaseError,
    Tx,
    classify,
    connection_lost,
    describe,
    get_database,
    reason_code_of,
)
from shared.db.migrate import MigrateSettings, Migration, SchemaTooOld, available_migrations, check_schema


def settings_for(url: str = "postgresql://u:p@127.0.0.1:1/x", **extra: object) -> MigrateSettings:
    return MigrateSettings.model_validate({"database_url": url, **extra})


def cloud_settings(**extra: object) -> MigrateSettings:
    return MigrateSettings.model_validate(
        {"cloud_sql_instance": "p:r:i", "db_name": "clouddb", "db_user": "netra", **extra}
    )


def fatal(code: str, severity: str = "FATAL", message: str = "refused") -> DatabaseError:
    return DatabaseError({"S": severity, "C": code, "M": message})


def chained(*links: BaseException) -> BaseException:
    """links[0] with links[1] as its __context__, links[1] with links[2], ..."""
    for outer, inner in zip(links, links[1:], strict=False):
        outer.__context__ = inner
    return links[0]


# -- parse_database_url, DirectTarget ---------------------------------------------------------------------


def test_a_full_url_is_parsed_with_percent_decoding() -> None:
    t = parse_database_url("postgresql://us%40er:p%2Fw@db.example:6543/appdb")
    assert (t.user, t.password, t.host, t.port, t.database, t.unix_sock) == (
        "us@er",
        "p/w",
        "db.example",
        6543,
        "appdb",
        None,
    )


def test_a_bare_url_gets_postgres_defaults() -> None:
    t = parse_database_url("postgresql://")
    assert (t.user, t.password, t.host, t.port, t.database, t.unix_sock) == (
        "postgres",
        None,
        "localhost",
        5432,
        "postgres",
        None,
    )


def test_a_socket_directory_in_the_query_names_the_socket_file() -> None:
    t = parse_database_url("postgresql://u@/db?host=/run/pg/&host=/other")
    assert t.unix_sock == "/run/pg/.s.PGSQL.5432", "the first host value, trailing slash dropped, default port"
    assert parse_database_url("postgresql://u@h:7000/db?host=/s").unix_sock == "/s/.s.PGSQL.7000"
    assert parse_database_url("postgresql://u@h/db?host=relative&host=/abs").unix_sock is None
    assert parse_database_url("postgresql://u@h/db?sslmode=disable").unix_sock is None


def test_a_target_is_local_on_a_socket_or_loopback_name_only() -> None:
    def target(host: str, sock: str | None = None) -> DirectTarget:
        return DirectTarget("u", None, host, 5432, "d", sock)

    assert target("localhost").local is True
    assert target("127.0.0.1").local is True
    assert target("::1").local is True
    assert target("db.example", "/run/pg/.s.PGSQL.5432").local is True
    assert target("db.example").local is False
    assert target("127.0.0.2").local is False


def test_a_target_is_a_value_and_with_database_keeps_the_rest() -> None:
    t = DirectTarget("u", "p", "h", 1, "a", "/s")
    assert t.with_database("b") == DirectTarget("u", "p", "h", 1, "b", "/s")
    assert t == DirectTarget("u", "p", "h", 1, "a", "/s")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.database = "c"  # type: ignore[misc]


# -- server_error, sqlstate -----------------------------------------------------------------------------


def test_server_fields_are_the_first_argument_when_a_dict() -> None:
    assert sqlstate(fatal("28P01")) == "28P01"
    assert server_error(DatabaseError({"C": "42P01"}, "more")) == {"C": "42P01"}
    assert server_error(DatabaseError("text", {"C": "42P01"})) is None
    assert server_error(DatabaseError()) is None
    assert sqlstate(RuntimeError({"C": "08006"})) == "08006", "any error whose first argument is the fields"


def test_a_fatal_hidden_behind_a_network_error_is_found() -> None:
    exc = chained(InterfaceError("network error"), BrokenPipeError(), fatal("3D000"))
    assert sqlstate(exc) == "3D000"
    direct = chained(InterfaceError("network error"), fatal("3D000"))
    assert sqlstate(direct) == "3D000"


def test_only_a_fatal_is_taken_from_the_context() -> None:
    assert sqlstate(chained(InterfaceError("network error"), fatal("42P01", severity="ERROR"))) is None


def test_the_context_is_followed_only_through_os_errors_and_for_pg8000_errors() -> None:
    assert sqlstate(chained(InterfaceError("x"), ValueError("y"), fatal("3D000"))) is None
    assert sqlstate(chained(RuntimeError("not pg8000"), fatal("3D000"))) is None
    assert sqlstate(InterfaceError("network error")) is None, "no context at all"
    assert sqlstate(chained(InterfaceError("x"), OSError())) is None, "the chain ends without fields"


def test_the_context_is_followed_four_links_deep_and_no_further() -> None:
    four = chained(InterfaceError("x"), OSError(), OSError(), OSError(), fatal("3D000"))
    assert sqlstate(four) == "3D000"
    five = chained(InterfaceError("x"), OSError(), OSError(), OSError(), OSError(), fatal("3D000"))
    assert sqlstate(five) is None


# -- classify, describe, connection_lost, reason codes ---------------------------------------------------


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        ("28P01", "wrong database password"),
        ("28000", "database login refused (role or pg_hba)"),
        ("42501", "missing database permission"),
    ],
)
def test_final_sqlstates_become_fatal_errors_naming_the_cause(code: str, cause: str) -> None:
    final = classify(fatal(code, message="detail from server"))
    assert isinstance(final, FatalDatabaseError)
    assert str(final) == f"{cause} (SQLSTATE {code}): detail from server"


def test_other_errors_are_kept_as_they_are() -> None:
    for exc in (fatal("3D000"), ConnectionRefusedError(), RuntimeError("x")):
        assert classify(exc) is exc


def test_describe_names_a_missing_database_and_the_server_message() -> None:
    assert describe(fatal("3D000"), "netra") == (
        "database 'netra' does not exist yet: run the migration job (python -m shared.db.migrate)"
    )
    assert describe(fatal("57P03", message="starting up"), "netra") == "SQLSTATE 57P03: starting up"
    assert describe(ConnectionRefusedError("refused"), "netra") == "ConnectionRefusedError: refused"
    assert len(describe(RuntimeError("x" * 400), "n")) == 300


@pytest.mark.parametrize("code", ["08006", "08001", "57P01", "57P02", "57P03"])
def test_server_side_connection_ends_are_connection_lost(code: str) -> None:
    assert connection_lost(fatal(code)) is True


@pytest.mark.parametrize(
    "exc",
    [ConnectionResetError(), TimeoutError(), InterfaceError("network error")],
)
def test_socket_failures_are_connection_lost(exc: BaseException) -> None:
    assert connection_lost(exc) is True


def test_statement_errors_are_not_connection_lost() -> None:
    class InterfaceError(Exception):  # same name, not pg8000's
        pass

    assert connection_lost(fatal("57014", severity="ERROR")) is False
    assert connection_lost(fatal("42P01", severity="ERROR")) is False
    assert connection_lost(RuntimeError("bug")) is False
    assert connection_lost(InterfaceError()) is False
    assert connection_lost(DatabaseError("no fields")) is False


def test_reason_codes_are_stable_words() -> None:
    assert reason_code_of(FatalDatabaseError("x")) == "database_access_refused"
    assert reason_code_of(fatal("3D000")) == "database_missing"
    assert reason_code_of(ConnectionRefusedError()) == "unreachable"


def test_database_unavailable_defaults_to_retry_after_two_seconds() -> None:
    exc = DatabaseUnavailable("down")
    assert exc.retry_after == 2 and exc.headers["Retry-After"] == "2" and exc.reason_code == "unreachable"


# -- Tx and rows ----------------------------------------------------------------------------------------


class FakeCursor:
    def __init__(self, rows: list[tuple[Any, ...]] | None = None, names: tuple[str, ...] = ("a", "b")) -> None:
        self.rows = rows or []
        self.names = names
        self.executed: list[tuple[str, Any]] = []
        self.rowcount = 7

    @property
    def description(self) -> list[tuple[Any, ...]] | None:
        if not self.executed or not self.executed[-1][0].startswith("SELECT"):
            return None
        return [(n, 25, None, None, None, None, None) for n in self.names]

    def execute(self, sql: str, params: Any = None) -> None:
        self.executed.append((sql, params))

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self.rows)

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None


class FakeConn:
    def __init__(self, cursor: FakeCursor | None = None, close_fails: bool = False) -> None:
        self._cursor = cursor or FakeCursor([(1, 2)])
        self.autocommit: bool | None = None
        self.closed = False
        self.close_fails = close_fails
        self.commits = 0
        self.rollbacks = 0

    def cursor(self) -> FakeCursor:
        return self._cursor

    def commit(self) -> None:
        self.commits += 1

    def rollback(self) -> None:
        self.rollbacks += 1

    def close(self) -> None:
        self.closed = True
        if self.close_fails:
            raise OSError("broken pipe")


def test_tx_returns_dict_rows_first_row_and_first_column() -> None:
    tx = Tx(FakeConn(FakeCursor([(1, 2), (3, 4)])))
    assert tx.all("SELECT") == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert tx.one("SELECT") == {"a": 1, "b": 2}
    assert tx.scalar("SELECT") == 1
    assert tx.execute("UPDATE") == 7
    assert tx.all("UPDATE") == [], "a statement without result columns has no rows"
    empty = Tx(FakeConn(FakeCursor([])))
    assert empty.one("SELECT") is None and empty.scalar("SELECT") is None


def test_tx_passes_parameters_and_an_empty_tuple_without() -> None:
    cursor = FakeCursor([(1, 2)])
    tx = Tx(FakeConn(cursor))
    tx.execute("UPDATE")
    tx.all("SELECT")
    tx.scalar("SELECT")
    assert [p for _, p in cursor.executed] == [(), (), ()]
    cursor.executed.clear()
    tx.execute("UPDATE", [1])
    tx.all("SELECT", [2])
    tx.scalar("SELECT", [3])
    assert [p for _, p in cursor.executed] == [[1], [2], [3]]


# -- Database: connect, retry, breaker, pool ------------------------------------------------------------


class FakeConnector:
    """Stands in for Connector: each connect() takes the next outcome (an exception to raise, or a conn)."""

    database_name = "netra"

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.closed = False

    def connect(self, database: str | None = None) -> Any:
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else FakeConn()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def close(self) -> None:
        self.closed = True


def make_db(*outcomes: Any, budget: float = 0, **extra: object) -> tuple[Database, FakeConnector]:
    db = Database(settings_for(**extra), connect_budget_s=budget)
    fake = FakeConnector(*outcomes)
    db.connector = fake  # type: ignore[assignment]
    return db, fake


def test_an_opened_connection_is_counted_and_not_autocommit() -> None:
    db, _ = make_db()
    assert db.connections_opened == 0
    conn = db.open()
    assert conn.autocommit is False
    db.open()
    assert db.connections_opened == 2


def test_transient_failures_are_retried_within_the_budget() -> None:
    conn = FakeConn()
    db, fake = make_db(ConnectionRefusedError("refused"), ConnectionRefusedError("refused"), conn, budget=30)
    assert db.open() is conn
    assert fake.calls == 3
    assert db.last_error == "ConnectionRefusedError: refused"
    assert db.breaker.snapshot()["state"] == "closed"


def test_retries_back_off_with_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenario 5: each retry first waits a random, positive time under the 2 s cap (tenacity's sleep is
    recorded, not slept: no timing is measured)."""
    import tenacity.nap

    waits: list[float] = []
    monkeypatch.setattr(tenacity.nap, "time", SimpleNamespace(sleep=waits.append))
    db, fake = make_db(*[ConnectionRefusedError()] * 2, FakeConn(), budget=30)
    db.open()
    assert fake.calls == 3 and len(waits) == 2
    assert all(0 < w <= 2.0 for w in waits), waits


def test_a_final_failure_is_not_retried() -> None:
    db, fake = make_db(fatal("28P01"), budget=5)
    with pytest.raises(FatalDatabaseError, match="wrong database password"):
        db.open()
    assert fake.calls == 1
    assert db.last_reason_code == "database_access_refused"


def test_a_zero_budget_makes_one_attempt_and_a_503() -> None:
    db, fake = make_db(*[ConnectionRefusedError()] * 5, db_connect_budget_s=1)
    with pytest.raises(DatabaseUnavailable) as info:
        db.open()
    assert fake.calls == 1
    assert info.value.reason_code == "unreachable" and info.value.status == 503
    assert db.last_reason_code == "unreachable"


def test_an_explicit_budget_overrides_the_databases() -> None:
    db, fake = make_db(*[ConnectionRefusedError()] * 5, budget=1)
    with pytest.raises(DatabaseUnavailable):
        db.open(budget_s=0)
    assert fake.calls == 1


def test_the_budget_defaults_to_the_setting() -> None:
    db = Database(settings_for(db_connect_budget_s=7))
    assert db.connect_budget_s == 7
    assert Database(settings_for(db_connect_budget_s=7), connect_budget_s=0).connect_budget_s == 0


def test_a_missing_database_is_a_503_saying_so() -> None:
    db, _ = make_db(fatal("3D000"))
    with pytest.raises(DatabaseUnavailable) as info:
        db.open()
    assert info.value.reason_code == "database_missing"
    assert "does not exist" in str(info.value)
    assert db.last_reason_code == "database_missing"


def test_the_breaker_opens_after_three_failures_for_five_seconds() -> None:
    db, fake = make_db(*[ConnectionRefusedError()] * 10)
    for _ in range(3):
        with pytest.raises(DatabaseUnavailable):
            db.open()
    assert fake.calls == 3
    with pytest.raises(DatabaseUnavailable) as info:
        db.open()
    assert fake.calls == 3, "an open breaker makes no attempt"
    assert info.value.retry_after == 5 and info.value.headers["Retry-After"] == "5"
    assert info.value.reason_code == "unreachable"


def test_two_failures_leave_the_breaker_closed() -> None:
    db, fake = make_db(ConnectionRefusedError(), ConnectionRefusedError())
    for _ in range(2):
        with pytest.raises(DatabaseUnavailable):
            db.open()
    db.open()
    assert fake.calls == 3


def test_an_open_breaker_answers_retry_after_at_least_one_second() -> None:
    db, _ = make_db()
    now = {"t": 100.0}
    db.breaker._clock = lambda: now["t"]  # noqa: SLF001
    for _ in range(3):
        db.breaker.record_failure()
    now["t"] += 4.8  # 0.2 s of the 5 s left
    with pytest.raises(DatabaseUnavailable) as info:
        db.open()
    assert info.value.retry_after == 1


def test_the_breaker_keeps_the_last_reason() -> None:
    db, _ = make_db(*[fatal("3D000")] * 3)
    for _ in range(3):
        with pytest.raises(DatabaseUnavailable):
            db.open()
    with pytest.raises(DatabaseUnavailable) as info:
        db.open()
    assert info.value.reason_code == "database_missing"


def test_the_pool_reuses_a_returned_connection() -> None:
    db, fake = make_db()
    with db.connection() as first:
        pass
    with db.connection() as second:
        assert second is first
    assert fake.calls == 1 and db._idle.qsize() == 1  # noqa: SLF001


def test_a_full_pool_answers_pool_busy() -> None:
    db, _ = make_db(db_pool_size=1)
    with db.connection():
        with pytest.raises(DatabaseUnavailable) as info:
            with db.connection(wait_s=0.05):
                pass
    assert info.value.reason_code == "pool_busy" and info.value.retry_after == 1
    with db.connection():
        pass  # the slot came back


def _idle_for(seconds: float, monkeypatch: pytest.MonkeyPatch) -> tuple[Database, FakeConn, FakeConnector]:
    db, fake = make_db()
    old = FakeConn()
    monkeypatch.setattr(database_module, "time", SimpleNamespace(monotonic=lambda: 1000.0))
    db._idle.put((old, 1000.0 - seconds))  # noqa: SLF001
    return db, old, fake


@pytest.mark.parametrize("idle_s", [299.5, 300.0])
def test_a_connection_idle_up_to_five_minutes_is_reused(idle_s: float, monkeypatch: pytest.MonkeyPatch) -> None:
    db, old, fake = _idle_for(idle_s, monkeypatch)
    with db.connection() as conn:
        assert conn is old
    assert fake.calls == 0 and not old.closed


def test_a_connection_idle_over_five_minutes_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    db, old, fake = _idle_for(300.5, monkeypatch)
    with db.connection() as conn:
        assert conn is not old
    assert fake.calls == 1 and old.closed


def test_an_error_in_the_block_discards_the_connection_and_passes_through() -> None:
    conn = FakeConn(close_fails=True)
    db, _ = make_db(conn)
    with pytest.raises(ValueError, match="bug"):
        with db.connection():
            raise ValueError("bug")
    assert conn.closed and db._idle.qsize() == 0  # noqa: SLF001
    with pytest.raises(KeyboardInterrupt):
        with db.connection() as second:
            raise KeyboardInterrupt
    assert second.closed and db._idle.qsize() == 0  # noqa: SLF001


def test_a_database_unavailable_in_the_block_passes_through() -> None:
    db, _ = make_db()
    with pytest.raises(DatabaseUnavailable) as info:
        with db.connection():
            raise DatabaseUnavailable("inner", reason_code="inner_reason")
    assert info.value.reason_code == "inner_reason"


def test_a_lost_connection_is_a_503_and_drops_the_idle_ones(caplog: pytest.LogCaptureFixture) -> None:
    a, b, c = FakeConn(), FakeConn(), FakeConn()
    db, _ = make_db(a, b, c, db_pool_size=3)
    with db.connection(), db.connection(), db.connection():
        pass
    assert db._idle.qsize() == 3  # noqa: SLF001
    with caplog.at_level(logging.WARNING, logger="db"):
        with pytest.raises(DatabaseUnavailable) as info:
            with db.connection():
                raise ConnectionResetError("reset")
    assert info.value.reason_code == "connection_lost" and info.value.retry_after == 1
    assert a.closed and b.closed and c.closed and db._idle.qsize() == 0  # noqa: SLF001
    [record] = [r for r in caplog.records if r.getMessage() == "database connection lost"]
    assert record.idle_dropped == 2  # type: ignore[attr-defined]


def test_a_transaction_commits_or_rolls_back() -> None:
    conn = FakeConn(FakeCursor([(5, 6)]))
    db, _ = make_db(conn)
    assert db.all("SELECT") == [{"a": 5, "b": 6}]
    assert db.one("SELECT") == {"a": 5, "b": 6}
    assert db.scalar("SELECT") == 5
    assert db.execute("UPDATE") == 7
    assert conn.commits == 4 and conn.rollbacks == 0
    with pytest.raises(ValueError):
        with db.transaction():
            raise ValueError("x")
    assert conn.rollbacks == 1 and conn.commits == 4


def test_a_failing_rollback_does_not_hide_the_error() -> None:
    class NoRollback(FakeConn):
        def rollback(self) -> None:
            raise OSError("gone")

    db, _ = make_db(NoRollback())
    with pytest.raises(ValueError, match="original"):
        with db.transaction():
            raise ValueError("original")


def test_warm_opens_one_connection_into_the_pool() -> None:
    conn = FakeConn(FakeCursor([(1,)]))
    db, fake = make_db(conn)
    db.warm()
    assert fake.calls == 1 and conn.commits == 1 and db._idle.qsize() == 1  # noqa: SLF001
    assert conn.cursor().executed == [("SELECT 1", None)]


def test_close_closes_the_idle_connections_and_the_connector() -> None:
    a, b = FakeConn(), FakeConn()
    db, fake = make_db(a, b, db_pool_size=2)
    with db.connection(), db.connection():
        pass
    db.close()
    assert a.closed and b.closed and fake.closed and db._idle.qsize() == 0  # noqa: SLF001


def test_get_database_keeps_one_per_settings_object() -> None:
    s1, s2 = settings_for(), settings_for()
    try:
        assert get_database(s1) is get_database(s1)
        assert get_database(s1) is not get_database(s2)
    finally:
        database_module._instances.pop(id(s1), None)  # noqa: SLF001
        database_module._instances.pop(id(s2), None)  # noqa: SLF001


# -- Connector: direct connect parameters, timeouts ------------------------------------------------------


class FakePgConn:
    def __init__(self) -> None:
        self._usock = SimpleNamespace(timeout=None, settimeout=self._set)
        self.adapters: dict[int, Any] = {}

    def _set(self, seconds: float) -> None:
        self._usock.timeout = seconds

    def register_in_adapter(self, oid: int, fn: Any) -> None:
        self.adapters[oid] = fn


def _direct(monkeypatch: pytest.MonkeyPatch, url: str, **extra: object) -> tuple[Connector, list[dict[str, Any]]]:
    import pg8000.dbapi

    calls: list[dict[str, Any]] = []

    def fake_connect(**kwargs: Any) -> FakePgConn:
        calls.append(kwargs)
        return FakePgConn()

    monkeypatch.setattr(pg8000.dbapi, "connect", fake_connect)
    return Connector(settings_for(url, **extra), "svc"), calls


def test_a_direct_connect_passes_the_target_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    connector, calls = _direct(
        monkeypatch, "postgresql://u:p@127.0.0.1:6000/main", db_connect_timeout_s=2, db_statement_timeout_ms=40_000
    )
    conn = connector.connect()
    other = connector.connect(database="other")
    first, second = calls
    assert {k: first[k] for k in ("user", "password", "host", "port", "database", "unix_sock")} == {
        "user": "u",
        "password": "p",
        "host": "127.0.0.1",
        "port": 6000,
        "database": "main",
        "unix_sock": None,
    }
    assert second["database"] == "other"
    assert first["ssl_context"] is False and first["timeout"] == 2 and first["application_name"] == "svc"
    assert first["startup_params"] == {"statement_timeout": "40000", "idle_in_transaction_session_timeout": "80000"}
    assert conn._usock.timeout == 45.0, "statement timeout plus max(connect timeout, 5 s)"  # noqa: SLF001
    assert other._usock.timeout == 45.0  # noqa: SLF001
    assert conn.adapters == {1184: connect_module.timestamptz_in, 1082: connect_module.date_in}
    assert connector.database_name == "main"


def test_a_remote_host_keeps_tls_negotiation(monkeypatch: pytest.MonkeyPatch) -> None:
    connector, calls = _direct(monkeypatch, "postgresql://u:p@db.example/main")
    connector.connect()
    assert calls[0]["ssl_context"] is None


def test_read_timeout_and_idle_timeout_bounds() -> None:
    connector = Connector(settings_for(db_statement_timeout_ms=15_000, db_connect_timeout_s=8))
    assert connector.read_timeout_s == 23.0
    assert connector._startup_params() == {  # noqa: SLF001
        "statement_timeout": "15000",
        "idle_in_transaction_session_timeout": "60000",
    }
    assert Connector(settings_for(db_statement_timeout_ms=2000, db_connect_timeout_s=1)).read_timeout_s == 7.0


def test_a_socket_timeout_is_set_only_when_there_is_a_socket() -> None:
    connect_module.set_socket_timeout(SimpleNamespace(), 3.0)
    conn = FakePgConn()
    connect_module.set_socket_timeout(conn, 3.0)
    assert conn._usock.timeout == 3.0  # noqa: SLF001


# -- Connector: the Cloud SQL path ----------------------------------------------------------------------


class FakeCloud:
    def __init__(self, delay: float | None = 0.0) -> None:
        self.delay = delay  # None: never answers
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.cancelled = threading.Event()
        self.closed = False

    async def connect_async(self, instance: str, driver: str, **kwargs: Any) -> Any:
        self.calls.append((instance, driver, kwargs))
        try:
            await asyncio.sleep(3600 if self.delay is None else self.delay)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return FakePgConn()

    def close(self) -> None:
        self.closed = True


def _cloud(cloud: FakeCloud, **extra: object) -> Connector:
    connector = Connector(cloud_settings(**extra))
    connector._loop = asyncio.new_event_loop()  # noqa: SLF001
    threading.Thread(target=connector._loop.run_forever, daemon=True).start()  # noqa: SLF001
    connector._cloud = cloud  # noqa: SLF001
    return connector


def test_a_cloud_connect_passes_user_database_and_password() -> None:
    cloud = FakeCloud()
    connector = _cloud(cloud, db_password="secret", db_connect_timeout_s=3, db_statement_timeout_ms=1000)
    try:
        assert connector.database_name == "clouddb"
        conn = connector.connect()
        connector.connect(database="other")
        (instance, driver, kwargs), second = cloud.calls
        assert (instance, driver) == ("p:r:i", "pg8000")
        assert kwargs == {
            "user": "netra",
            "db": "clouddb",
            "timeout": 3,
            "password": "secret",
            "startup_params": {"statement_timeout": "1000", "idle_in_transaction_session_timeout": "60000"},
        }
        assert second[2]["db"] == "other"
        assert conn._usock.timeout == 6.0  # noqa: SLF001
    finally:
        connector.close()


def test_an_iam_cloud_connect_sends_no_password() -> None:
    cloud = FakeCloud()
    connector = _cloud(cloud, db_iam_auth=True, db_password="unused")
    try:
        connector.connect()
        assert "password" not in cloud.calls[0][2]
    finally:
        connector.close()


def test_a_cloud_connect_that_never_answers_ends_and_is_cancelled() -> None:
    cloud = FakeCloud(delay=None)
    connector = _cloud(cloud, db_connect_timeout_s=0.25)
    try:
        with pytest.raises(TimeoutError, match=r"^Cloud SQL connector: no connection within 0\.5 s$"):
            connector.connect()
        assert cloud.cancelled.wait(10), "the pending connect is cancelled, not left running"
    finally:
        connector.close()


def test_a_cloud_connect_may_take_twice_the_connect_timeout() -> None:
    """A slow but working connect (Admin API calls plus a handshake) is not cut at the connect timeout."""
    cloud = FakeCloud(delay=3.0)
    connector = _cloud(cloud, db_connect_timeout_s=2)
    try:
        assert isinstance(connector.connect(), FakePgConn)
    finally:
        connector.close()


def test_close_closes_the_cloud_connector_and_stops_its_loop() -> None:
    cloud = FakeCloud()
    connector = _cloud(cloud)
    loop = connector._loop  # noqa: SLF001
    assert loop is not None
    connector.close()
    assert cloud.closed and connector._cloud is None and connector._loop is None  # noqa: SLF001
    for _ in range(200):
        if not loop.is_running():
            break
        threading.Event().wait(0.05)
    assert not loop.is_running()
    connector.close()  # twice is fine


def test_the_cloud_connector_is_built_once_lazily_on_its_own_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    import google.cloud.sql.connector as cloud_sql

    built: list[dict[str, Any]] = []
    failures = [RuntimeError("no credentials")]

    class FakeCloudSqlConnector(FakeCloud):
        def __init__(self, **kwargs: Any) -> None:
            if failures:
                raise failures.pop()
            super().__init__()
            built.append(kwargs)

    monkeypatch.setattr(cloud_sql, "Connector", FakeCloudSqlConnector)
    before = set(threading.enumerate())
    connector = Connector(cloud_settings(db_connect_timeout_s=2, db_ip_type="public", db_iam_auth=True))
    try:
        with pytest.raises(RuntimeError, match="no credentials"):
            connector.connect()
        loop = connector._loop  # noqa: SLF001
        connector.connect()
        connector.connect()
        assert connector._loop is loop, "a failed build keeps its loop for the retry"  # noqa: SLF001
        [kwargs] = built
        assert kwargs["refresh_strategy"] == "lazy" and kwargs["loop"] is loop
        assert kwargs["ip_type"] == cloud_sql.IPTypes.PUBLIC and kwargs["enable_iam_auth"] is True
        assert kwargs["timeout"] == 5, "at least 5 s for the Admin API calls"
        new = [t for t in threading.enumerate() if t not in before and t.name == "cloud-sql-connector"]
        assert len(new) == 1 and new[0].daemon
    finally:
        connector.close()


def test_the_cloud_connectors_timeout_follows_a_long_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    import google.cloud.sql.connector as cloud_sql

    built: list[dict[str, Any]] = []

    class FakeCloudSqlConnector(FakeCloud):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__()
            built.append(kwargs)

    monkeypatch.setattr(cloud_sql, "Connector", FakeCloudSqlConnector)
    connector = Connector(cloud_settings(db_connect_timeout_s=7.5))
    try:
        connector.connect()
        assert built[0]["timeout"] == 7
    finally:
        connector.close()


# -- date and timestamptz converters: the fast path and the fallback -------------------------------------


@pytest.fixture
def fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    from pg8000 import converters

    monkeypatch.setattr(converters, "timestamptz_in", lambda data: ("fallback", data))
    monkeypatch.setattr(converters, "date_in", lambda data: ("fallback", data))


@pytest.mark.usefixtures("fallback")
def test_iso_utc_values_take_the_fast_path_others_the_fallback() -> None:
    from datetime import UTC, date, datetime

    assert connect_module.timestamptz_in("2024-01-02 03:04:05+00") == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert date_in("2024-01-02") == date(2024, 1, 2)
    for value in ("2024-01-02T03:04:05+00", "2024-01-02 03:04:05+02", "2024-01-02 xx:04:05+00", "12024-01-02 03:04+00"):
        assert connect_module.timestamptz_in(value) == ("fallback", value)
    for value in ("infinity", "2024-1-2", "12024-01-02", "2024-13-02"):
        assert date_in(value) == ("fallback", value)


# -- migrations: files, versions, schema check -----------------------------------------------------------


def _files(tmp_path: Path, *names: str) -> Path:
    for name in names:
        (tmp_path / name).write_text(f"-- {name}\n")
    return tmp_path


def test_migration_files_give_version_name_and_order(tmp_path: Path) -> None:
    found = available_migrations(_files(tmp_path, "0002_second.sql", "0010_tenth.sql", "0001_first.sql"))
    assert [(m.version, m.name, m.label) for m in found] == [
        (1, "first", "0001_first"),
        (2, "second", "0002_second"),
        (10, "tenth", "0010_tenth"),
    ]
    assert found[0].sql == "-- 0001_first.sql\n"


def test_badly_named_or_duplicate_migrations_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(ValueError, match="must be named NNNN_name.sql"):
        available_migrations(_files(tmp_path / "a", "0001_ok.sql", "1_x.sql"))
    with pytest.raises(ValueError, match="share a version"):
        available_migrations(_files(tmp_path / "b", "0001_a.sql", "0001_b.sql"))


def test_a_migration_is_a_value_with_a_short_checksum() -> None:
    m = Migration(1, "a", "SELECT 1")
    assert len(m.checksum) == 16 and m.checksum == Migration(2, "b", "SELECT 1").checksum
    assert m.checksum != Migration(1, "a", "SELECT 2").checksum
    assert m.label == "0001_a"
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.sql = "x"  # type: ignore[misc]


def test_the_required_version_is_the_newest_file(monkeypatch: pytest.MonkeyPatch) -> None:
    ms = [Migration(1, "a", ""), Migration(2, "b", ""), Migration(5, "c", "")]
    monkeypatch.setattr(migrate_module, "available_migrations", lambda: ms)
    assert migrate_module.required_version() == 5
    monkeypatch.setattr(migrate_module, "available_migrations", lambda: [])
    assert migrate_module.required_version() == 0
    monkeypatch.undo()
    assert migrate_module.required_version() == available_migrations()[-1].version


class SchemaCursor:
    def __init__(self, table: bool, version: int) -> None:
        self.table, self.version, self.last = table, version, ""

    def execute(self, sql: str, params: Any = None) -> None:
        self.last = sql

    def fetchone(self) -> tuple[Any, ...]:
        if "to_regclass" in self.last:
            return (self.table, "pad")
        return (self.version, "pad")


class SchemaConn:
    def __init__(self, table: bool, version: int) -> None:
        self._cursor = SchemaCursor(table, version)
        self.rollbacks = 0

    def cursor(self) -> SchemaCursor:
        return self._cursor

    def rollback(self) -> None:
        self.rollbacks += 1


@pytest.fixture
def four(monkeypatch: pytest.MonkeyPatch) -> None:
    ms = [Migration(v, n, "") for v, n in [(1, "a"), (2, "b"), (3, "c"), (4, "d")]]
    monkeypatch.setattr(migrate_module, "available_migrations", lambda: ms)


@pytest.mark.usefixtures("four")
def test_check_schema_names_exactly_the_missing_migrations() -> None:
    with pytest.raises(SchemaTooOld) as info:
        check_schema(SchemaConn(True, 1), required=3)
    assert (info.value.current, info.value.required, info.value.missing) == (1, 3, ["0002_b", "0003_c"])
    assert info.value.public_details == {"missing_migrations": ["0002_b", "0003_c"]}
    with pytest.raises(SchemaTooOld) as info:
        check_schema(SchemaConn(False, 99))
    assert (info.value.current, info.value.missing) == (0, ["0001_a", "0002_b", "0003_c", "0004_d"])


@pytest.mark.usefixtures("four")
def test_check_schema_passes_at_or_above_the_required_version() -> None:
    conn = SchemaConn(True, 4)
    assert check_schema(conn) == 4 and conn.rollbacks == 1
    assert check_schema(SchemaConn(True, 3), required=3) == 3
    assert check_schema(SchemaConn(True, 6)) == 6


@pytest.mark.usefixtures("four")
def test_a_required_version_without_a_file_is_named_by_number() -> None:
    with pytest.raises(SchemaTooOld) as info:
        check_schema(SchemaConn(True, 4), required=7)
    assert info.value.missing == ["0007"]


# -- the migration job's command line -------------------------------------------------------------------


@pytest.fixture
def job_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import shared.logging

    monkeypatch.setattr(shared.logging, "configure_logging", lambda *args, **kwargs: None)
    monkeypatch.setenv("NETRA_ENV", "test")
    monkeypatch.setenv("NETRA_DOTENV", "/nonexistent/.env")
    for name in ("CLOUD_SQL_INSTANCE", "DB_POOL_SIZE", "DB_CONNECT_TIMEOUT_S"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_job_describes_itself(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        migrate_module.main(["--help"])
    assert info.value.code == 0
    assert "Versioned SQL migrations, applied under a PostgreSQL advisory lock." in capsys.readouterr().out


def test_the_job_exits_2_on_bad_configuration(job_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    job_env.setenv("DATABASE_URL", "postgresql://u:p@127.0.0.1:1/x")
    job_env.setenv("DB_POOL_SIZE", "0")
    assert migrate_module.main([]) == 2
    assert "DB_POOL_SIZE" in capsys.readouterr().err


def test_the_job_exits_1_when_the_database_cannot_be_reached(
    job_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    job_env.setenv("DATABASE_URL", "postgresql://u:p@127.0.0.1:1/x")
    with caplog.at_level(logging.ERROR, logger="migrate"):
        assert migrate_module.main([]) == 1
        assert migrate_module.main(["--status"]) == 1
    failures = [r.getMessage() for r in caplog.records if r.name == "migrate"]
    assert len(failures) == 2 and all(m.startswith("migration failed: ") for m in failures)


def test_the_job_reports_status_and_an_up_to_date_schema(
    job_env: pytest.MonkeyPatch, shared_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    job_env.setenv("DATABASE_URL", shared_db_url)
    newest = available_migrations()[-1].version
    assert migrate_module.main(["--status"]) == 0
    assert capsys.readouterr().out == f"schema version {newest}; pending: none\n"
    assert migrate_module.main([]) == 0
    assert capsys.readouterr().out == f"applied: nothing (up to date); schema version {newest}\n"


def test_the_job_status_lists_the_pending_migrations(
    job_env: pytest.MonkeyPatch, fresh_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    job_env.setenv("DATABASE_URL", fresh_db_url)
    labels = [m.label for m in available_migrations()]
    assert migrate_module.main(["--target", "1"]) == 0
    assert capsys.readouterr().out.startswith(f"applied: {labels[0]}; schema version ")
    assert migrate_module.main(["--status"]) == 0
    assert capsys.readouterr().out == f"schema version 1; pending: {', '.join(labels[1:])}\n"


def test_ensure_database_says_whether_this_call_created_it(fresh_db_url: str, pg_server: Any) -> None:
    connector = Connector(settings_for(fresh_db_url))
    assert migrate_module._ensure_database(connector) is True  # noqa: SLF001
    assert migrate_module._ensure_database(connector) is False, "it exists: connecting works"  # noqa: SLF001
    real_connect = connector.connect
    refusals = [fatal("3D000")]

    def connect(database: str | None = None) -> Any:
        if refusals and database is None:
            raise refusals.pop()
        return real_connect(database)

    connector.connect = connect  # type: ignore[method-assign]
    assert migrate_module._ensure_database(connector) is False, "another copy created it meanwhile"  # noqa: SLF001
    bad = Connector(settings_for(pg_server.url_for("t-bad-name")))
    with pytest.raises(ValueError, match="unusual name"):
        migrate_module._ensure_database(bad)  # noqa: SLF001


def test_migrate_stops_at_the_target_resumes_and_warns_on_a_changed_file(
    fresh_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("0001_a.sql", "0002_b.sql", "0003_c.sql"):
        (tmp_path / name).write_text(f"CREATE TABLE t_{name[5]} (id int);")
    monkeypatch.setattr(migrate_module, "available_migrations", lambda: available_migrations(tmp_path))
    connector = Connector(settings_for(fresh_db_url))
    try:
        assert migrate_module.migrate(connector, target=1) == ["0001_a"]
        assert migrate_module.migrate(connector, target=1) == []
        with caplog.at_level(logging.WARNING, logger="migrate"):
            assert migrate_module.migrate(connector) == ["0002_b", "0003_c"]
            assert not [r for r in caplog.records if r.name == "migrate"], "unchanged files: no warning"
            (tmp_path / "0001_a.sql").write_text("CREATE TABLE t_a (id bigint);")
            assert migrate_module.migrate(connector) == []
        warnings = [r for r in caplog.records if r.name == "migrate"]
        assert [(r.getMessage(), r.migration) for r in warnings] == [  # type: ignore[attr-defined]
            ("applied migration differs from its file", "0001_a")
        ]
    finally:
        connector.close()


def test_migrate_creates_its_ledger_even_when_nothing_is_due(fresh_db_url: str) -> None:
    """`--target 0` on a new database applies nothing but leaves the (empty) schema_migrations table: the ledger
    is created outside any migration's transaction, so it does not depend on a migration committing it."""
    connector = Connector(settings_for(fresh_db_url))
    try:
        assert migrate_module.migrate(connector, target=0) == []
        conn = connector.connect()
        try:
            cur = conn.cursor()
            cur.execute("SELECT to_regclass('public.schema_migrations') IS NOT NULL")
            assert cur.fetchone()[0] is True
            assert migrate_module.applied_version(cur) == 0
        finally:
            conn.close()
    finally:
        connector.close()


def test_a_migration_and_its_ledger_row_commit_together(
    fresh_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration whose ledger row cannot be written leaves nothing behind: its statements and the row are one
    transaction (here the file itself takes its own version number, so the ledger insert fails)."""
    (tmp_path / "0001_a.sql").write_text(
        "CREATE TABLE t_a (id int); INSERT INTO schema_migrations (version, name, checksum) VALUES (1, 'taken', 'x');"
    )
    monkeypatch.setattr(migrate_module, "available_migrations", lambda: available_migrations(tmp_path))
    connector = Connector(settings_for(fresh_db_url))
    try:
        with pytest.raises(Exception, match="schema_migrations_pkey"):
            migrate_module.migrate(connector)
        conn = connector.connect()
        try:
            cur = conn.cursor()
            cur.execute("SELECT to_regclass('public.t_a') IS NULL, count(*) FROM schema_migrations")
            assert cur.fetchone() == [True, 0], "the failed migration left no table and no ledger row"
        finally:
            conn.close()
    finally:
        connector.close()
