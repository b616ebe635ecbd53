"""Cold-start timing shared by the benchmarks: spawn a process, poll until its first successful answer."""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from emulators.process import ManagedProcess
from shared.config import REPO_ROOT

EMPTY_FUNCTION = REPO_ROOT / "tests/bench/empty_function/main.py"  # the floor every cold start is compared with


def empty_ok(url: str) -> bool:
    return httpx.get(url + "/", timeout=5).status_code == 200


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class ColdStart:
    """One cold start's phases, in seconds from the spawn: the port accepting, then the first real success."""

    port_open_s: float
    first_success_s: float

    @property
    def first_request_s(self) -> float:
        """Port open to first success: the first request's own work (connections, keys, first RPCs)."""
        return self.first_success_s - self.port_open_s


def spawn_phases(argv: list[str], env: dict[str, str], port: int, ok: Callable[[str], bool]) -> ColdStart:
    """Spawns ``argv`` and times the port opening, then the first request for which ``ok(base_url)`` is true."""
    started = time.perf_counter()
    proc = ManagedProcess("cold", argv, env=env).start()
    opened: float | None = None
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            if not proc.alive():
                raise RuntimeError(f"process exited:\n{proc.output()[-2000:]}")
            if opened is None:
                if port_open(port):
                    opened = time.perf_counter() - started
                else:
                    time.sleep(0.002)
                    continue
            try:
                if ok(url):
                    return ColdStart(opened, time.perf_counter() - started)
            except httpx.TransportError:
                pass
            time.sleep(0.005)
    finally:
        proc.stop()


def spawn_until(argv: list[str], env: dict[str, str], port: int, ok: Callable[[str], bool]) -> float:
    """Seconds from spawning ``argv`` to the first request for which ``ok(base_url)`` is true."""
    return spawn_phases(argv, env, port, ok).first_success_s


def phases_line(name: str, runs: list[ColdStart]) -> str:
    """Medians of each phase, for the breakdown printed beside a cold-start figure."""
    port = statistics.median(r.port_open_s for r in runs) * 1000
    first = statistics.median(r.first_request_s for r in runs) * 1000
    total = statistics.median(r.first_success_s for r in runs) * 1000
    return f"{name}: spawn -> port open {port:.0f} ms, port open -> first success {first:.0f} ms, total {total:.0f} ms"
