"""Cold-start timing shared by the benchmarks: spawn a process, poll until its first successful answer."""

from __future__ import annotations

import re
import socket
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


def spawn_phases(
    argv: list[str],
    env: dict[str, str],
    port: int,
    ok: Callable[[str], bool],
    after: Callable[[str, float], None] | None = None,
    log_file: Path | None = None,
) -> ColdStart:
    """Spawns ``argv`` and times the port opening, then the first request for which ``ok(base_url)`` is true.
    ``after(base_url, seconds_since_spawn)`` runs once on success, before the process stops; ``log_file`` gets the
    process's whole output."""
    started = time.perf_counter()
    proc = ManagedProcess("cold", argv, env=env, log_file=log_file).start()
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
                    result = ColdStart(opened, time.perf_counter() - started)
                    if after is not None:
                        after(url, result.first_success_s)
                    return result
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


IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)")


def import_self_ms(importtime_output: str) -> Counter[str]:
    """Self import time in ms by package, from ``-X importtime`` output (self times add up whatever the nesting,
    which threads importing at once garble). Our own modules by their first two parts (functions.agent), the rest
    by their top-level package."""
    by_package: Counter[str] = Counter()
    for line in importtime_output.splitlines():
        match = IMPORT_LINE.search(line)
        if match:
            parts = match.group(2).split(".")
            key = ".".join(parts[:2]) if parts[0] in ("functions", "shared") else parts[0]
            by_package[key] += int(match.group(1)) / 1000
    return by_package


def imports_line(name: str, by_package: Counter[str], top: int = 10) -> str:
    total = sum(by_package.values())
    heaviest = ", ".join(f"{pkg} {ms:.0f}" for pkg, ms in by_package.most_common(top))
    return f"{name}: imports until the first success {total:.0f} ms (self time by package, ms): {heaviest}"
