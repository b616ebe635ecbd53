"""The database handle on a real PostgreSQL: one pool per instance, bounded, breaker, timeouts."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest

from emulators.postgres import PASSWORD, EmbeddedPostgres
from shared.db import Database, DatabaseUnavailable, FatalDatabaseError, get_database
from shared.db.migrate import MigrateSettings
from tests.agent.tcpproxy import TcpProxy


def settings_for(url: str, **extra: object) -> MigrateSettings:
    return MigrateSettings.model_validate({"database_url": url, **extra})


def test_scenario_2_many_first_requests_create_one_pool(shared_db_url: str) -> None:
    """Scenario 2: many first requests together on a fresh instance -> the pool is created once."""
    settings = settings_for(shared_db_url, db_pool_size=4)
    barrier = threading.Barrier(32)

    def first_request(_: int) -> tuple[int, int]:
        barrier.wait()
        db = get_database(settings)
        return id(db), db.scalar("SELECT 1")

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(first_request, range(32)))
    assert len({r[0] for r in results}) == 1, "one Database (pool) for the instance"
    assert all(r[1] == 1 for r in results)
    db = get_database(settings)
    assert db.connections_opened <= 4, "never more connections than the pool size"
    db.close()


def test_scenario_6_connect_retry_outlasts_a_short_outage(shared_db_url: str) -> None:
    """Scenario 6, the inner retry on its own: with the default budget (DB_CONNECT_BUDGET_S), opening a connection
    while the database refuses connections retries with backoff and returns a working connection once the database
    is back a second later; the caller never sees the outage."""
    target = urlparse(shared_db_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    proxy.stop()  # the port refuses connections: the database is down
    db = Database(settings_for(shared_db_url.replace(f":{target.port}/", f":{proxy.port}/")))
    back = threading.Timer(1.0, proxy.start)
    back.start()
    try:
        conn = db.open()
        cursor = conn.cursor()
        cursor.execute("SELECT 1")
        assert cursor.fetchone()[0] == 1
        conn.close()
    finally:
        back.join()
        proxy.stop()
    assert db.last_error != "no attempt yet", "the first attempts met the outage and were retried"
    assert db.connections_opened == 1


def test_scenario_7_wrong_credentials_fail_fast_with_clear_cause(pg_server: EmbeddedPostgres) -> None:
    """Scenario 7: wrong credentials -> a clear error naming the cause; no endless retry loop."""
    url = pg_server.url_for("postgres", password="not-the-password")
    db = Database(settings_for(url), connect_budget_s=20)
    started = time.monotonic()
    with pytest.raises(FatalDatabaseError) as info:
        db.open()
    assert time.monotonic() - started < 5, "a final error must not be retried for the whole budget"
    assert "wrong database password" in str(info.value) and "28P01" in str(info.value)
    assert PASSWORD not in str(info.value) and "not-the-password" not in str(info.value)


def test_scenario_8_stalled_statement_is_ended_by_statement_timeout(shared_db_url: str) -> None:
    """Scenario 8: a stalled statement is ended by the statement timeout; the request fails cleanly."""
    db = Database(settings_for(shared_db_url, db_statement_timeout_ms=300))
    started = time.monotonic()
    with pytest.raises(Exception, match="statement timeout"):
        db.scalar("SELECT pg_sleep(5)")
    assert time.monotonic() - started < 4
    assert db.scalar("SELECT 2") == 2, "the pool recovers: the broken connection was discarded"
    db.close()


def test_scenario_8_statement_longer_than_the_connect_timeout_runs_to_statement_timeout(shared_db_url: str) -> None:
    """Scenario 8: the connect timeout bounds connecting only. A statement longer than it but shorter than the
    statement timeout succeeds; one longer than the statement timeout fails cleanly with the server's error (not
    a socket timeout), and the pool still serves."""
    db = Database(settings_for(shared_db_url, db_connect_timeout_s=0.3, db_statement_timeout_ms=2500))
    assert db.scalar("SELECT 1 FROM pg_sleep(1.0)") == 1, "a 1 s statement outlives a 0.3 s connect timeout"
    with pytest.raises(Exception, match="statement timeout") as info:
        db.scalar("SELECT pg_sleep(6)")
    assert "57014" in str(info.value), "the server's query_canceled, not a socket timeout"
    assert db.scalar("SELECT 3") == 3
    db.close()


def test_scenario_8_a_transaction_given_a_longer_timeout_runs_past_the_default_then_the_default_is_back(
    shared_db_url: str,
) -> None:
    """Scenario 8: DELETE /api/usage of a large upload runs longer than a request's statement timeout (its
    triggers subtract every record). Its transaction gets a timeout of its own: the server's statement timeout
    and the socket's backstop both follow it (else the socket would cut a statement at 5.3 s here, with a lost
    connection instead of the server's clean error), and the same pooled connection is back on the defaults
    afterwards."""
    db = Database(settings_for(shared_db_url, db_connect_timeout_s=0.2, db_statement_timeout_ms=300, db_pool_size=1))
    with db.transaction(timeout_ms=8000) as tx:
        assert tx.scalar("SELECT 1 FROM pg_sleep(2.0)") == 1
        assert tx.scalar("SHOW statement_timeout") == "8s"
        assert tx.conn._usock.gettimeout() == 13.0  # noqa: SLF001 - 8 s + the 5 s floor of the backstop
    with db.connection() as conn:
        assert conn._usock.gettimeout() == db.connector.read_timeout_s  # noqa: SLF001 - the same connection
        conn.rollback()
    assert db.scalar("SHOW statement_timeout") == "300ms"
    with pytest.raises(Exception, match="statement timeout"):
        db.scalar("SELECT pg_sleep(2)")
    db.close()


def test_scenario_8_stalled_connect_is_ended_by_connect_timeout() -> None:
    """Scenario 8: a server that accepts TCP but never answers: the connect timeout ends it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(50)
    port = listener.getsockname()[1]
    db = Database(settings_for(f"postgresql://u:p@127.0.0.1:{port}/x", db_connect_timeout_s=0.5), connect_budget_s=1.5)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as info:
        db.open()
    assert time.monotonic() - started < 6
    assert info.value.status == 503 and "Retry-After" in info.value.headers
    listener.close()


def test_scenario_5_database_down_is_not_flooded() -> None:
    """Scenario 5: the database is down while many requests start: backoff with jitter, a bounded pool,
    and a breaker that opens, so the database sees few connection attempts; every caller gets a 503."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(200)
    port = listener.getsockname()[1]
    accepted = {"n": 0}
    stop = threading.Event()

    def refuse() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            accepted["n"] += 1
            conn.close()  # a server that drops every connection

    threading.Thread(target=refuse, daemon=True).start()
    db = Database(settings_for(f"postgresql://u:p@127.0.0.1:{port}/x", db_pool_size=3), connect_budget_s=2)
    outcomes: list[str] = []

    def request(_: int) -> None:
        try:
            db.scalar("SELECT 1")
            outcomes.append("ok")
        except DatabaseUnavailable as exc:
            outcomes.append(str(exc.status))
        except Exception as exc:  # anything else would be a 500
            outcomes.append(type(exc).__name__)

    with ThreadPoolExecutor(40) as pool:
        list(pool.map(request, range(40)))
    stop.set()
    listener.close()
    assert outcomes == ["503"] * 40, outcomes
    assert accepted["n"] <= 12, f"{accepted['n']} connection attempts for 40 requests: the breaker did not hold"
    assert db.breaker.snapshot()["state"] in ("open", "half_open")


def _first_message(host: str) -> bytes:
    """The first bytes pg8000 sends to a server reached as ``host`` (a listener that answers nothing)."""
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen(1)
    listener.settimeout(10)
    port = listener.getsockname()[1]
    db = Database(settings_for(f"postgresql://u:p@{host}:{port}/x", db_connect_timeout_s=1.0), connect_budget_s=0)

    def attempt() -> None:
        with contextlib.suppress(Exception):  # the listener hangs up after the first message: only it matters
            db.connector.connect()

    opener = threading.Thread(target=attempt, daemon=True)
    opener.start()
    conn, _ = listener.accept()
    conn.settimeout(10)
    first = conn.recv(8)
    conn.close()
    listener.close()
    opener.join(15)
    return first


def test_a_remote_database_host_is_asked_for_tls_a_loopback_one_is_not() -> None:
    """pg8000's default (ssl_context=None) starts with an SSLRequest; the project turns it off only for a Unix
    socket or loopback (DirectTarget.local), where it costs CPU for nothing. 127.0.0.2 is loopback to the kernel
    but not one of the names treated as local, so it stands in for a remote host."""
    ssl_request = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")
    assert _first_message("127.0.0.2") == ssl_request
    assert _first_message("127.0.0.1") != ssl_request


def test_a_lost_connection_is_a_503_and_the_idle_pool_is_dropped(shared_db_url: str) -> None:
    """Scenario 6: the server ends the pooled connections (a restart): the request on one gets
    DatabaseUnavailable (connection_lost), not the driver's error; the other idle ones are dropped with it, so
    the next request opens a fresh connection and succeeds."""
    db = Database(settings_for(shared_db_url, db_pool_size=3))
    with db.connection() as a, db.connection() as b:
        pids = []
        for conn in (a, b):
            cursor = conn.cursor()
            cursor.execute("SELECT pg_backend_pid()")
            pids.append(cursor.fetchone()[0])
    assert db._idle.qsize() == 2
    killer = Database(settings_for(shared_db_url))
    for pid in pids:
        assert killer.scalar("SELECT pg_terminate_backend(%s)", [pid]) is True
    killer.close()
    with pytest.raises(DatabaseUnavailable) as info:
        with db.connection() as conn:
            conn.cursor().execute("SELECT 1")
    assert info.value.reason_code == "connection_lost" and info.value.status == 503
    assert db._idle.qsize() == 0, "the other idle connection was as dead and is dropped"
    assert db.scalar("SELECT 1") == 1
    db.close()


def test_a_failure_is_described_in_one_bounded_line() -> None:
    """describe() feeds logs, /health bodies and 503 messages: a driver error with a huge text (a whole query, a
    server dump) is cut to 300 characters, its type kept in front."""
    from shared.db.database import describe

    line = describe(RuntimeError("x" * 5000), "netra")
    assert line.startswith("RuntimeError: x") and len(line) <= 300
