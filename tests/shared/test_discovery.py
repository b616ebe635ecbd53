"""Scenario 12: a discovery file or peer URL appears late; lookups retry within a bound.

The unit tests pin the bound of ``lookup_url``; the process tests start a real functions-framework service
that finds auth's key set only through ``.service_discovery`` and write auth's entry after its first request
has arrived.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from shared import discovery
from shared.tokens.keyset import generate_keyset, jwks_from_keyset
from tests.auth.test_tokens import JwksServer, sign

VERIFY_FUNCTION = "tests/auth/verify_function/main.py"
VERIFY_ENV = {"AUTH_ISSUER": "iss-a", "TOKEN_AUDIENCE": "aud-a"}


def write_later(delay_s: float, name: str, url: str) -> threading.Thread:
    parsed = urlparse(url)

    def write() -> None:
        time.sleep(delay_s)
        discovery.write_entry(name, parsed.hostname or "127.0.0.1", parsed.port or 80, pid=0)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_scenario_12_lookup_waits_for_a_late_discovery_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenario 12: the peer's file is written 0.5 s after the lookup starts: the lookup returns its URL."""
    monkeypatch.setenv("NETRA_DISCOVERY_DIR", str(tmp_path))
    writer = write_later(0.5, "peer", "http://127.0.0.1:4321")
    assert discovery.read_entry("peer") is None, "the file must not exist when the lookup starts"
    assert discovery.lookup_url("peer", timeout_s=10) == "http://127.0.0.1:4321"
    writer.join()


def test_scenario_12_lookup_of_a_peer_that_never_appears_ends_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario 12: the bound holds: no file, no endless wait; the error names the peer and the folder. The test
    times the lookup itself (a thread it waits for, at most 10 s for a 0.3 s bound), so a lookup that ignores its
    bound fails here at once, not at pytest-timeout's limit."""
    monkeypatch.setenv("NETRA_DISCOVERY_DIR", str(tmp_path))
    outcome: dict[str, BaseException] = {}

    def lookup() -> None:
        try:
            discovery.lookup_url("ghost", timeout_s=0.3, interval_s=0.05)
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the lookup ignored its 0.3 s bound"
    error = outcome.get("error")
    assert isinstance(error, discovery.DiscoveryTimeout), error
    assert "'ghost'" in str(error) and str(tmp_path) in str(error)


def test_scenario_12_half_written_file_is_not_read_as_an_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenario 12: a reader racing a writer sees no entry rather than a broken one, then the whole entry."""
    monkeypatch.setenv("NETRA_DISCOVERY_DIR", str(tmp_path))
    (tmp_path / "peer.json").write_text('{"name": "peer", "url": "http://127.')
    assert discovery.read_entry("peer") is None
    discovery.write_entry("peer", "127.0.0.1", 5555)
    assert discovery.lookup_url("peer", timeout_s=1) == "http://127.0.0.1:5555"


def test_scenario_12_service_serves_once_auth_discovery_file_appears(
    start_function: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario 12: a real token-verifying service starts with no discovery file for auth; its first request
    arrives, auth's file appears 1.5 s later, and that same request is answered 200 (no restart)."""
    monkeypatch.setenv("NETRA_DISCOVERY_DIR", str(tmp_path / "discovery"))  # the folder start_function gives
    keyset = generate_keyset()
    server = JwksServer(lambda: jwks_from_keyset(keyset))
    try:
        _, url = start_function(VERIFY_FUNCTION, "verify", VERIFY_ENV, wait_path="/")  # 401: no discovery
        assert discovery.read_entry("auth") is None
        writer = write_later(1.5, "auth", server.url.removesuffix("/.well-known/jwks.json"))
        answer = httpx.get(url, headers={"Authorization": f"Bearer {sign(keyset)}"}, timeout=30)
        writer.join()
        assert answer.status_code == 200, answer.text
        assert answer.json()["sub"] == "u"
        assert server.hits == 1, "the key set was fetched once, after the file appeared"
    finally:
        server.close()


def test_scenario_12_service_whose_peer_never_appears_answers_503_not_500(
    start_function: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario 12: auth's file never appears: the request ends (bounded) with 503 and Retry-After, and the
    process stays up for the next request."""
    monkeypatch.setenv("NETRA_DISCOVERY_DIR", str(tmp_path / "discovery"))
    keyset = generate_keyset()
    _, url = start_function(VERIFY_FUNCTION, "verify", VERIFY_ENV, wait_path="/")
    answer = httpx.get(url, headers={"Authorization": f"Bearer {sign(keyset)}"}, timeout=60)
    assert answer.status_code == 503, answer.text
    assert answer.json() == {"error": "keyset_unavailable"}
    assert answer.headers.get("Retry-After")
    assert httpx.get(url, timeout=10).status_code == 401, "still serving: a request without a token gets 401"
