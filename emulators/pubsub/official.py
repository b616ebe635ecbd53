"""gcloud's Pub/Sub emulator (Java), used instead of the embedded one when NETRA_OFFICIAL_EMULATORS=1.

The component's launcher script is run directly rather than through ``gcloud beta emulators pubsub
start``, which saves gcloud's own start-up (seconds) and leaves one process tree to stop.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from google.pubsub_v1 import types


class OfficialEmulatorError(RuntimeError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def wanted() -> bool:
    return os.environ.get("NETRA_OFFICIAL_EMULATORS") == "1"


def find_launcher() -> Path | None:
    """The pubsub-emulator component of the gcloud on PATH, if it and Java are installed."""
    gcloud = shutil.which("gcloud")
    if gcloud is None or shutil.which("java") is None:
        return None
    sdk_root = Path(gcloud).resolve().parent.parent
    launcher = sdk_root / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
    return launcher if launcher.is_file() else None


def unavailable_reason() -> str | None:
    """None when the official emulator can run here, else what is missing."""
    if shutil.which("gcloud") is None:
        return "gcloud is not on PATH"
    if shutil.which("java") is None:
        return "java is not on PATH (the gcloud Pub/Sub emulator needs it)"
    if find_launcher() is None:
        return "gcloud's pubsub-emulator component is not installed (gcloud components install pubsub-emulator)"
    return None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _answers(host: str, port: int) -> bool:
    list_topics = types.ListTopicsRequest.pb()
    response = types.ListTopicsResponse.pb()
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        call = channel.unary_unary(
            "/google.pubsub.v1.Publisher/ListTopics",
            request_serializer=list_topics.SerializeToString,
            response_deserializer=response.FromString,
        )
        try:
            call(list_topics(project="projects/netra-readiness"), timeout=2)
            return True
        except grpc.RpcError:
            return False


class OfficialEmulator:
    def __init__(self, host: str, port: int, timeout_s: float = 90.0) -> None:
        launcher = find_launcher()
        if launcher is None:
            raise OfficialEmulatorError("official_unavailable", unavailable_reason() or "not found")
        self.host = host
        self.port = port or _free_port(host)
        # Its log goes to our stderr: stdout carries only the ready line.
        self.process = subprocess.Popen(
            [str(launcher), f"--host={host}", f"--port={self.port}"],
            stdout=sys.stderr,
            stderr=sys.stderr,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while not _answers(host, self.port):
            if self.process.poll() is not None:
                raise OfficialEmulatorError(
                    "official_exited",
                    f"gcloud's Pub/Sub emulator exited with "
                    f"{self.process.returncode} before answering on port {self.port}",
                )
            if time.monotonic() > deadline:
                self.stop()
                raise OfficialEmulatorError(
                    "official_timeout",
                    f"gcloud's Pub/Sub emulator did not answer on port {self.port} within {timeout_s:g}s",
                )
            time.sleep(0.2)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
            except ProcessLookupError:
                pass
