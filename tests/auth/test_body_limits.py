"""Request bodies are bounded whatever their framing (issue 15, finding 3; scenario 29: memory pressure from a
large upload): a chunked body has no Content-Length, and was read and parsed whole before any authentication.
Against a real auth process: its peak memory is read from /proc (VmHWM) of the serving worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.fixtures.auth import AuthService, start_auth

BODY_MIB = 8


@pytest.fixture(scope="module")
def auth(
    shared_db_url: str, firestore_emulator_host: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AuthService]:
    service = start_auth(shared_db_url, tmp_path_factory.mktemp("limits"), firestore_host=firestore_emulator_host)
    yield service
    service.stop()


def peak_rss_mib(service: AuthService) -> float:
    """Highest resident set size so far of the process tree serving auth (gunicorn's master and worker)."""
    root = psutil.Process(service.process.pid)
    peaks = []
    for proc in [root, *root.children(recursive=True)]:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        peaks.append(next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")))
    return max(peaks) / 1024


def chunks(total_mib: int) -> Iterator[bytes]:
    """A valid JSON array of empty objects, ``total_mib`` MiB, sent in 64 KiB chunks (no Content-Length)."""
    piece = b"{}," * (65_536 // 3)
    yield b"["
    for _ in range(total_mib * 1_048_576 // len(piece)):
        yield piece
    yield b"{}]"


def test_scenario_29_chunked_body_is_refused_at_the_limit_without_reading_it_whole(auth: AuthService) -> None:
    httpx.post(f"{auth.url}/auth/logout", json={})  # warm: imports done before the baseline
    before = peak_rss_mib(auth)
    try:
        response = httpx.post(
            f"{auth.url}/auth/logout", content=chunks(BODY_MIB), headers={"Content-Type": "application/json"}
        )
        status, body = response.status_code, response.json()
    except httpx.TransportError as exc:  # the server may close while the client is still sending
        pytest.fail(f"no answer to the chunked body: {exc!r}")
    assert status == 413, body
    assert body["error"]["code"] == "payload_too_large" and body["error"]["details"]["limit_bytes"] == 1_048_576
    grown = peak_rss_mib(auth) - before
    # Parsing 8 MiB of {} costs ~200 MiB; reading 1 MiB + 1 byte and stopping costs a few.
    assert grown < 24, f"peak memory grew by {grown:.0f} MiB for a refused {BODY_MIB} MiB chunked body"
    # The instance stays up and serves.
    assert httpx.get(f"{auth.url}/health/live").status_code == 200


def test_same_body_with_content_length_is_refused_alike(auth: AuthService) -> None:
    body = b"".join(chunks(2))
    response = httpx.post(f"{auth.url}/auth/logout", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("path", ["/auth/logout", "/auth/ws-ticket/redeem", "/auth/refresh"])
def test_deeply_nested_json_is_a_400_with_a_code(auth: AuthService, path: str) -> None:
    for body in (b"[" * 100_000, b'{"a":' * 5_000 + b"1" + b"}" * 5_000):
        response = httpx.post(f"{auth.url}{path}", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "json_too_deep"
