"""The database handle a service keeps for its life: a bounded pool, connect retries, a breaker.

The pool is hand-written (about 60 lines) because the well-kept option, SQLAlchemy's QueuePool, costs
more import time than everything else on the validate path (see docs/PERFORMANCE.md), and we need no
more than checkout with a bound, checkin, and discard-on-error.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from shared.config import DatabaseSection
from shared.db.connect import (
    FATAL_SQLSTATES,
    MISSING_DATABASE,
    Connector,
    server_error,
    set_socket_timeout,
    sqlstate,
)
from shared.errors import NetraError, ServiceUnavailable
from shared.startup import CircuitBreaker

log = logging.getLogger("db")


class FatalDatabaseError(NetraError):
    """Retrying cannot help: wrong credentials, missing permission. The message names the cause (for the log)."""

    reason_code = "database_access_refused"


class DatabaseUnavailable(ServiceUnavailable):
    """503 ``database_unavailable``; ``reason_code`` says why in a stable word (the detail is logged)."""

    def __init__(self, message: str, retry_after: int = 2, reason_code: str = "unreachable") -> None:
        super().__init__(message, retry_after=retry_after, code="database_unavailable", details={"reason": reason_code})
        self.reason_code = reason_code


def classify(exc: BaseException) -> BaseException:
    """Turn a driver error into FatalDatabaseError where the cause is final; keep it otherwise."""
    state = sqlstate(exc)
    if state in FATAL_SQLSTATES:
        detail = (server_error(exc) or {}).get("M", "")
        cause = {
            "28P01": "wrong database password",
            "28000": "database login refused (role or pg_hba)",
            "42501": "missing database permission",
        }[state]
        return FatalDatabaseError(f"{cause} (SQLSTATE {state}): {detail}")
    return exc


def describe(exc: BaseException, database: str) -> str:
    """A one-line, secret-free reason for logs, health bodies and 503 messages."""
    state = sqlstate(exc)
    if state == MISSING_DATABASE:
        return f"database {database!r} does not exist yet: run the migration job (python -m shared.db.migrate)"
    if state is not None:
        return f"SQLSTATE {state}: {(server_error(exc) or {}).get('M', '')}"
    return f"{type(exc).__name__}: {exc}"[:300]


# SQLSTATEs of a connection the server ended: admin_shutdown, crash_shutdown, cannot_connect_now; class 08 is
# "connection exception".
_CONNECTION_ENDED = {"57P01", "57P02", "57P03"}


def connection_lost(exc: BaseException) -> bool:
    """The connection under a statement is gone (server restarted or unreachable, socket cut): a dependency
    failure to answer with 503 + Retry-After, not a bug. pg8000 reports socket failures as InterfaceError."""
    state = sqlstate(exc)
    if state is not None:
        return state.startswith("08") or state in _CONNECTION_ENDED
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    return type(exc).__name__ == "InterfaceError" and type(exc).__module__.startswith("pg8000")


def reason_code_of(exc: BaseException) -> str:
    """The stable public word for a failed connect (the detail is describe()'s, for the log)."""
    if isinstance(exc, FatalDatabaseError):
        return FatalDatabaseError.reason_code
    return "database_missing" if sqlstate(exc) == MISSING_DATABASE else "unreachable"


def _transient(exc: BaseException) -> bool:
    return not isinstance(exc, FatalDatabaseError)


def _rows(cursor: Any) -> list[dict[str, Any]]:
    if cursor.description is None:
        return []
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class Tx:
    """A cursor inside one transaction, with dict rows."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.cursor = conn.cursor()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        self.cursor.execute(sql, params or ())
        return self.cursor.rowcount

    def all(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        self.cursor.execute(sql, params or ())
        return _rows(self.cursor)

    def one(self, sql: str, params: Sequence[Any] | None = None) -> dict[str, Any] | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        self.cursor.execute(sql, params or ())
        row = self.cursor.fetchone()
        return row[0] if row else None


class Database:
    def __init__(
        self, settings: DatabaseSection, application_name: str = "netra", connect_budget_s: float | None = None
    ) -> None:
        self.settings = settings
        self.connector = Connector(settings, application_name)
        self.size = settings.db_pool_size
        # The inner retry (scenario 6): a connection that cannot be opened is retried for this long before the
        # caller gets a 503. The database start-up component retries around it, so an outage longer than this
        # budget still ends in a ready service.
        self.connect_budget_s = settings.db_connect_budget_s if connect_budget_s is None else connect_budget_s
        self.breaker = CircuitBreaker("database", failure_threshold=3, recovery_s=5.0)
        self._idle: queue.LifoQueue[tuple[Any, float]] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(self.size)
        self.connections_opened = 0
        self.last_error = "no attempt yet"
        self.last_reason_code = "unreachable"  # the stable word for last_error, for public answers
        self._count_lock = threading.Lock()

    # -- connecting ----------------------------------------------------------------------------------
    def _open_once(self) -> Any:
        if not self.breaker.allow():
            # The cause (self.last_error) went to the log when it happened; the answer says what, not why.
            raise DatabaseUnavailable(
                "the database is unreachable; retrying after repeated failures",
                retry_after=max(1, round(self.breaker.retry_after())),
                reason_code=self.last_reason_code,
            )
        try:
            conn = self.connector.connect()
        except Exception as exc:
            final = classify(exc)
            self.last_error = describe(final, self.connector.database_name)
            self.last_reason_code = reason_code_of(final)
            self.breaker.record_failure()
            if final is not exc:
                raise final from None
            raise
        conn.autocommit = False
        self.breaker.record_success()
        with self._count_lock:
            self.connections_opened += 1
        return conn

    def open(self, budget_s: float | None = None) -> Any:
        """Open a new connection, retrying transient failures with jittered backoff within a budget."""
        budget = self.connect_budget_s if budget_s is None else budget_s
        try:
            for attempt in Retrying(
                stop=stop_after_delay(budget),
                wait=wait_random_exponential(multiplier=0.2, max=2.0),
                retry=retry_if_exception(_transient),
                reraise=True,
            ):
                with attempt:
                    return self._open_once()
        except (FatalDatabaseError, DatabaseUnavailable):
            raise
        except Exception as exc:
            log.warning("database unreachable", extra={"reason": describe(exc, self.connector.database_name)})
            if reason_code_of(exc) == "database_missing":
                raise DatabaseUnavailable(
                    "the database does not exist yet (the migration job creates it)", reason_code="database_missing"
                ) from None
            raise DatabaseUnavailable("the database is unreachable; retry shortly") from None
        raise AssertionError("unreachable")

    # -- pool ----------------------------------------------------------------------------------------
    @contextmanager
    def connection(self, wait_s: float = 10.0) -> Iterator[Any]:
        if not self._slots.acquire(timeout=wait_s):
            raise DatabaseUnavailable(
                f"all {self.size} database connections are busy", retry_after=1, reason_code="pool_busy"
            )
        conn = None
        try:
            try:
                conn, idle_since = self._idle.get_nowait()
                if time.monotonic() - idle_since > 300:
                    self._discard(conn)
                    conn = self.open()
            except queue.Empty:
                conn = self.open()
            yield conn
        except BaseException as exc:
            if conn is not None:
                self._discard(conn)
                conn = None
            if isinstance(exc, Exception) and not isinstance(exc, DatabaseUnavailable) and connection_lost(exc):
                # The server went away: the idle connections are as dead as this one. Drop them so the next
                # requests open fresh ones (the pool recovers) instead of each meeting a dead socket.
                dropped = self._drain_idle()
                log.warning(
                    "database connection lost",
                    extra={"reason": describe(exc, self.connector.database_name), "idle_dropped": dropped},
                )
                raise DatabaseUnavailable(
                    "the database connection was lost; retry shortly", retry_after=1, reason_code="connection_lost"
                ) from None
            raise
        finally:
            if conn is not None:
                self._idle.put((conn, time.monotonic()))
            self._slots.release()

    def _drain_idle(self) -> int:
        dropped = 0
        while True:
            try:
                conn, _ = self._idle.get_nowait()
            except queue.Empty:
                return dropped
            self._discard(conn)
            dropped += 1

    def _discard(self, conn: Any) -> None:
        try:
            conn.close()
        except Exception:  # noqa: S110 - a broken connection may fail to close; it is dropped either way
            pass

    @contextmanager
    def transaction(self, timeout_ms: int | None = None) -> Iterator[Tx]:
        """One transaction. ``timeout_ms``: a statement timeout of its own, for the rare work longer than a
        request's (DELETE /api/usage); the connection's socket timeout follows it and is put back after."""
        with self.connection() as conn:
            if timeout_ms is not None:
                set_socket_timeout(conn, self.connector.read_timeout_for(timeout_ms))
            tx = Tx(conn)
            try:
                if timeout_ms is not None:
                    tx.execute(f"SET LOCAL statement_timeout = {int(timeout_ms)}")  # SET takes no parameters
                yield tx
                conn.commit()
            except BaseException:
                try:
                    conn.rollback()
                except Exception:  # noqa: S110 - the original error matters, not the rollback's
                    pass
                raise
            finally:
                if timeout_ms is not None:
                    try:
                        set_socket_timeout(conn, self.connector.read_timeout_s)
                    except OSError:  # noqa: S110 - a broken connection is discarded by connection()
                        pass

    def all(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        with self.transaction() as tx:
            return tx.all(sql, params)

    def one(self, sql: str, params: Sequence[Any] | None = None) -> dict[str, Any] | None:
        with self.transaction() as tx:
            return tx.one(sql, params)

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        with self.transaction() as tx:
            return tx.scalar(sql, params)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        with self.transaction() as tx:
            return tx.execute(sql, params)

    def warm(self) -> None:
        """Open one connection and put it in the pool: the startup component for the database."""
        with self.connection() as conn:
            cur = conn.cursor()
            cur.execute("SELECT 1")
            cur.fetchall()
            conn.commit()

    def close(self) -> None:
        while True:
            try:
                conn, _ = self._idle.get_nowait()
            except queue.Empty:
                break
            self._discard(conn)
        self.connector.close()


_instances: dict[int, Database] = {}
_instances_lock = threading.Lock()


def get_database(settings: DatabaseSection, application_name: str = "netra") -> Database:
    """One Database per settings object for the life of the instance (scenario 2: created once)."""
    key = id(settings)
    with _instances_lock:
        db = _instances.get(key)
        if db is None:
            db = _instances[key] = Database(settings, application_name)
        return db
