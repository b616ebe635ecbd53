"""Firestore stops answering after auth has started: sign-in answers 503 with Retry-After, never a 500, and
works again once Firestore is back (the load test's K=8 burst once got 500s from a timed-out write)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from tests.agent.tcpproxy import TcpProxy
from tests.fixtures.auth import start_auth


def test_firestore_down_after_start_gives_503_then_recovers(
    shared_db_url: str, firestore_emulator_host: str, tmp_path: Path
) -> None:
    host, port = firestore_emulator_host.split(":")
    proxy = TcpProxy(host, int(port)).start()
    auth = start_auth(shared_db_url, tmp_path, firestore_host=proxy.address)
    try:
        assert auth.login("before@example.com")["access_token"]
        proxy.stop()
        started = time.monotonic()
        down = httpx.post(f"{auth.url}/auth/dev/login", json={"email": "during@example.com"}, timeout=60)
        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "dependency_unavailable"
        assert int(down.headers["Retry-After"]) >= 1
        assert httpx.get(f"{auth.url}/health/live", timeout=10).status_code == 200, "the instance stays up"

        print(f"503 after {time.monotonic() - started:.1f}s")
        proxy.start()
        started = time.monotonic()
        deadline = time.monotonic() + 60
        while True:
            again = httpx.post(f"{auth.url}/auth/dev/login", json={"email": "during@example.com"}, timeout=60)
            if again.status_code == 200:
                break
            assert again.status_code == 503, again.text  # only ever 503 while it reconnects
            assert time.monotonic() < deadline, "auth did not recover once Firestore was back"
            time.sleep(0.5)
        print(f"recovered {time.monotonic() - started:.1f}s after Firestore came back")
        assert again.json()["user"]["email"] == "during@example.com"
    finally:
        auth.stop()
        proxy.stop()


def test_postgres_connection_lost_under_dev_login_is_503_and_the_pool_recovers(
    shared_db_url: str, firestore_emulator_host: str, tmp_path: Path
) -> None:
    """Issue 15, finding 5: PostgreSQL went away under auth's pooled connections (every open connection cut)
    -> POST /auth/dev/login answers 503 database_unavailable with Retry-After (it was a 500 from pg8000's
    InterfaceError), and the next request is served on a fresh connection: the pool dropped its dead ones."""
    parsed = urlsplit(shared_db_url)
    proxy = TcpProxy(parsed.hostname or "127.0.0.1", parsed.port or 5432).start()
    db_url = urlunsplit(parsed._replace(netloc=f"{parsed.username}:{parsed.password}@{proxy.address}"))
    auth = start_auth(db_url, tmp_path, {"DB_POOL_SIZE": "3"}, firestore_host=firestore_emulator_host)
    try:
        # Several requests at once, so the pool holds more than one idle connection.
        with ThreadPoolExecutor(3) as pool:
            assert all(r["access_token"] for r in pool.map(lambda i: auth.login(f"pool{i}@example.com"), range(3)))
        proxy.stop()  # cuts the pooled connections
        proxy.start()  # and the database is reachable again at once
        lost = httpx.post(f"{auth.url}/auth/dev/login", json={"email": "lost@example.com"}, timeout=60)
        assert lost.status_code == 503, lost.text
        assert lost.json()["error"]["code"] == "database_unavailable"
        assert lost.json()["error"]["details"] == {"reason": "connection_lost"}
        assert int(lost.headers["Retry-After"]) >= 1
        assert "InterfaceError" not in lost.text and "network error" not in lost.text
        again = httpx.post(f"{auth.url}/auth/dev/login", json={"email": "lost@example.com"}, timeout=60)
        assert again.status_code == 200, "the pool dropped every dead connection, not only the one that failed"
        assert "database connection lost" in auth.process.output()
    finally:
        auth.stop()
        proxy.stop()
