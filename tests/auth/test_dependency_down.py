"""Firestore stops answering after auth has started: sign-in answers 503 with Retry-After, never a 500, and
works again once Firestore is back (the load test's K=8 burst once got 500s from a timed-out write)."""

from __future__ import annotations

import time
from pathlib import Path

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
