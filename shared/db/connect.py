"""Opening one pg8000 connection: Cloud SQL Python Connector in the cloud, direct TCP or socket locally."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from shared.config import DatabaseSection

# SQLSTATE classes that no retry can fix: bad password (28P01), no pg_hba entry / role (28000),
# insufficient privilege (42501). Scenario 7 wants a clear error, not an endless loop.
FATAL_SQLSTATES = {"28P01", "28000", "42501"}
MISSING_DATABASE = "3D000"


@dataclass(frozen=True)
class DirectTarget:
    user: str
    password: str | None
    host: str
    port: int
    database: str
    unix_sock: str | None = None

    @property
    def local(self) -> bool:
        """A Unix socket or loopback address. pg8000's default (None) asks the server for TLS first and builds a
        default SSL context for it, which loads the system CA store: ~0.2 s of CPU per connection, for nothing on
        a socket (PostgreSQL has no TLS there) or loopback. Other hosts keep that default."""
        return self.unix_sock is not None or self.host in {"localhost", "127.0.0.1", "::1"}

    def with_database(self, name: str) -> DirectTarget:
        return DirectTarget(self.user, self.password, self.host, self.port, name, self.unix_sock)


def parse_database_url(url: str) -> DirectTarget:
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    host = parsed.hostname or "localhost"
    port = parsed.port or 5432
    unix_sock = None
    if "host" in query and query["host"][0].startswith("/"):
        unix_sock = f"{query['host'][0].rstrip('/')}/.s.PGSQL.{port}"
    return DirectTarget(
        user=unquote(parsed.username or "postgres"),
        password=unquote(parsed.password) if parsed.password else None,
        host=host,
        port=port,
        database=parsed.path.lstrip("/") or "postgres",
        unix_sock=unix_sock,
    )


def _fields(exc: BaseException | None) -> dict[str, str] | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], dict) else None


def server_error(exc: BaseException) -> dict[str, str] | None:
    """The server's error fields of a pg8000 error (``C`` SQLSTATE, ``M`` message, ``S`` severity), if any.

    When the server refuses a connection with a FATAL error (database missing, bad password), pg8000 closes
    its socket while handling it, and that close can fail with ``InterfaceError("network error")`` (the server
    has already closed its end; more often under load and over a Unix socket). The FATAL error is then only the
    network error's ``__context__``. It is taken from there only if it is FATAL: the server ended the session,
    so the network error is its consequence, not a separate fault (scenarios 1, 3 and 7)."""
    fields = _fields(exc)
    if fields is not None:
        return fields
    if not type(exc).__module__.startswith("pg8000"):
        return None
    # The chain is InterfaceError <- OSError (broken pipe, reset) <- the server's FATAL DatabaseError.
    link: BaseException | None = exc.__context__
    for _ in range(4):
        if link is None:
            return None
        fields = _fields(link)
        if fields is not None:
            return fields if fields.get("S") == "FATAL" else None
        if not isinstance(link, OSError):
            return None
        link = link.__context__
    return None


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a pg8000 error, if it carries one (see :func:`server_error`)."""
    fields = server_error(exc)
    return fields.get("C") if fields else None


class Connector:
    """Creates connections for one settings object. The Cloud SQL connector is built on first use."""

    def __init__(self, settings: DatabaseSection, application_name: str = "netra") -> None:
        self.settings = settings
        self.application_name = application_name
        self._cloud: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        url = settings.database_url.get_secret_value() if settings.database_url else None
        self.direct = parse_database_url(url) if url else None

    @property
    def database_name(self) -> str:
        return self.direct.database if self.direct else self.settings.db_name

    def _startup_params(self) -> dict[str, str]:
        return {
            "statement_timeout": str(self.settings.db_statement_timeout_ms),
            "idle_in_transaction_session_timeout": str(max(self.settings.db_statement_timeout_ms * 2, 60_000)),
        }

    @property
    def read_timeout_s(self) -> float:
        """Socket timeout once connected: a backstop for a connection that stalls with no answer at all. It is
        longer than any statement may run, so a slow statement is ended first by the server's statement_timeout,
        with a clean error, and the connection stays usable (scenario 8)."""
        return self.read_timeout_for(self.settings.db_statement_timeout_ms)

    def read_timeout_for(self, statement_timeout_ms: int) -> float:
        """The same backstop for a transaction given a longer statement timeout (Database.transaction)."""
        return statement_timeout_ms / 1000 + max(self.settings.db_connect_timeout_s, 5.0)

    def connect(self, database: str | None = None) -> Any:
        import pg8000.dbapi

        # pg8000's ``timeout`` is the socket's timeout for the connection's whole life: it bounds the TCP connect
        # and the start-up handshake (what DB_CONNECT_TIMEOUT_S is for), but also every later read. Left as it is,
        # any statement longer than the connect timeout fails with a socket timeout before statement_timeout
        # applies, so the socket gets the read timeout once the connection is open.
        timeout = self.settings.db_connect_timeout_s
        if self.direct is not None:
            target = self.direct.with_database(database) if database else self.direct
            conn = pg8000.dbapi.connect(
                user=target.user,
                password=target.password,
                host=target.host,
                port=target.port,
                database=target.database,
                unix_sock=target.unix_sock,
                ssl_context=False if target.local else None,
                timeout=timeout,
                application_name=self.application_name,
                startup_params=self._startup_params(),
            )
        else:
            conn = self._cloud_connect(database or self.settings.db_name, timeout)
        set_socket_timeout(conn, self.read_timeout_s)
        register_fast_converters(conn)
        return conn

    def _cloud_connect(self, database: str, timeout: float) -> Any:
        with self._lock:
            if self._cloud is None:
                from google.cloud.sql.connector import Connector as CloudSqlConnector
                from google.cloud.sql.connector import IPTypes

                # The connector runs on an event loop of ours (its public ``loop`` argument) so that a connect
                # can be bounded: its sync connect() waits without a limit, and its Admin API calls have
                # aiohttp's 5-minute default. A hung Admin API would hold a request that long.
                if self._loop is None:  # kept when building failed (no credentials): a retry reuses it
                    self._loop = asyncio.new_event_loop()
                    threading.Thread(target=self._loop.run_forever, name="cloud-sql-connector", daemon=True).start()
                # Lazy refresh: serverless CPU is throttled between requests, so a background
                # certificate refresh would stall (scenario 30).
                self._cloud = CloudSqlConnector(
                    refresh_strategy="lazy",
                    ip_type={"public": IPTypes.PUBLIC, "private": IPTypes.PRIVATE, "psc": IPTypes.PSC}[
                        self.settings.db_ip_type
                    ],
                    enable_iam_auth=self.settings.db_iam_auth,
                    timeout=int(max(timeout, 5)),
                    loop=self._loop,
                    sqladmin_api_endpoint=self.settings.cloud_sql_admin_endpoint,
                )
        password = self.settings.db_password.get_secret_value() if self.settings.db_password else None
        kwargs: dict[str, Any] = {
            "user": self.settings.db_user,
            "db": database,
            "timeout": timeout,
            "startup_params": self._startup_params(),
        }
        if not self.settings.db_iam_auth:
            kwargs["password"] = password
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(
            self._cloud.connect_async(self.settings.cloud_sql_instance, "pg8000", **kwargs), self._loop
        )
        # A cold connect makes two Admin API calls, a TLS handshake and a login: twice the connect timeout.
        try:
            return future.result(timeout=2 * timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"Cloud SQL connector: no connection within {2 * timeout:g} s") from None

    def close(self) -> None:
        if self._cloud is not None:
            self._cloud.close()
            self._cloud = None
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = None


def set_socket_timeout(conn: Any, seconds: float) -> None:
    """Sets the timeout of a pg8000 connection's socket. pg8000 has no public setter; ``_usock`` is the socket it
    made (TCP, Unix) or was given (the Cloud SQL connector's TLS socket, which it leaves without any timeout).
    tests/shared/test_db.py fails if a pg8000 upgrade moves it."""
    sock = getattr(conn, "_usock", None)
    if sock is not None:
        sock.settimeout(seconds)


# pg8000 parses every date and timestamptz with datetime.strptime (about 35 us a value): a grouped analysis row
# carries three, and the facts of a million-record account took 0.4 s in strptime alone. The ISO forms a UTC
# session sends are parsed with fromisoformat instead (same value, same tzinfo object); anything else (another
# time zone's offset, BC, infinity, years past 9999) goes to pg8000's own converter, so results never differ.
# tests/shared/test_pg_converters.py compares the two on many values.
TIMESTAMPTZ_OID = 1184
DATE_OID = 1082


def _fast_or_pg8000(data: str, looks_iso: bool, fast: Callable[[str], Any], fallback: str) -> Any:
    if looks_iso:
        try:
            return fast(data)
        except ValueError:
            pass
    from pg8000 import converters

    return getattr(converters, fallback)(data)


def timestamptz_in(data: str) -> Any:
    looks_iso = len(data) >= 22 and data.endswith("+00") and data[10] == " "
    return _fast_or_pg8000(data, looks_iso, datetime.fromisoformat, "timestamptz_in")


def date_in(data: str) -> Any:
    return _fast_or_pg8000(data, len(data) == 10, date.fromisoformat, "date_in")


def register_fast_converters(conn: Any) -> None:
    conn.register_in_adapter(TIMESTAMPTZ_OID, timestamptz_in)
    conn.register_in_adapter(DATE_OID, date_in)
