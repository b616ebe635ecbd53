"""Google's Pub/Sub emulator (Java, gcloud's ``pubsub-emulator`` component), started as ``java -jar`` directly.

Neither ``gcloud beta emulators pubsub start`` nor the component's shell launcher is used: java is our
direct child, so it can be told to die with us (``emulators.lifeline``) and there is one process to stop.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
from google.pubsub_v1 import types

from emulators.implementation import ImplementationError, official_parts, require_official
from emulators.lifeline import with_parent_death

LISTENING = "Server started, listening on"


class OfficialEmulatorError(RuntimeError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def unavailable_reason() -> str | None:
    """None when the official emulator can run here, else what is missing."""
    return official_parts()[1]


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
    def __init__(self, host: str, port: int, timeout_s: float = 120.0) -> None:
        try:
            parts = require_official()
        except ImplementationError as exc:
            raise OfficialEmulatorError("official_unavailable", exc.message) from None
        self.host = host
        self.port = port or _free_port(host)
        # Its log goes to our stderr (stdout carries only the ready line), read by a thread that notices when it
        # listens: before that, an answer could come from whatever else holds the port.
        self.process = subprocess.Popen(
            with_parent_death(
                [str(parts.java), "-jar", str(parts.pubsub_jar), f"--host={host}", f"--port={self.port}"]
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self.listening = threading.Event()
        threading.Thread(target=self._forward, name="pubsub-official-out", daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while not (self.listening.is_set() and _answers(host, self.port)):
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

    def _forward(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if LISTENING in line:
                self.listening.set()
            try:
                sys.stderr.write(line)
                sys.stderr.flush()
            except (OSError, ValueError):  # our stderr is gone (our parent died): keep draining
                pass

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
