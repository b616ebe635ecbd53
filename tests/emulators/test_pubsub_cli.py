"""`python -m emulators.pubsub` as a command: the ready line, a clean stop on signals, clear start-up errors.

These name the implementation they test (``--kind own``); Google's emulator behind the same command is
tested in test_no_orphans.py and, through the client, in test_pubsub_conformance.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import psutil
import pytest
from google.cloud import pubsub_v1

from emulators.implementation import OFFICIAL, OWN
from shared.config import REPO_ROOT
from tests.fixtures.emulators import skip_unless_available


def start(*args: str, kind: str = OWN) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "emulators.pubsub", "--kind", kind, *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    ("kind", "sig"), [(OFFICIAL, signal.SIGTERM), (OWN, signal.SIGTERM), (OWN, signal.SIGINT)]
)  # SIGINT takes the launcher's same path; Google's emulator is too slow to start to try it twice
def test_prints_one_ready_line_serves_and_exits_cleanly_on_signal(
    kind: str, sig: signal.Signals, monkeypatch: pytest.MonkeyPatch
) -> None:
    skip_unless_available(kind)
    proc = start("--host", "127.0.0.1", "--port", "0", kind=kind)
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready == {"ready": True, "host": "127.0.0.1", "port": ready["port"], "kind": kind}
        assert isinstance(ready["port"], int) and ready["port"] > 0

        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{ready['port']}")
        publisher = pubsub_v1.PublisherClient()
        publisher.create_topic(name="projects/cli-check/topics/ready-check")
        assert [t.name for t in publisher.list_topics(project="projects/cli-check")] == [
            "projects/cli-check/topics/ready-check"
        ]
        publisher.stop()

        children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert out == ""  # the ready line was the only stdout output
        assert [p for p in children if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_busy_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = start("--port", str(port))
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert out == ""
    assert f"cannot listen on 127.0.0.1:{port}" in err


def test_a_bad_port_argument_is_rejected() -> None:
    proc = start("--port", "http")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "port must be an integer 0..65535" in err


def test_official_kind_without_gcloud_is_a_clear_error() -> None:
    env = {**os.environ, "PATH": "/nonexistent"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulators.pubsub", "--kind", "official"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert out == ""
    assert "official_unavailable" in err and "gcloud is not on PATH" in err
