"""Cold-start timing shared by the benchmarks: spawn a process, poll until its first successful answer."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from emulators.process import ManagedProcess
from shared.config import REPO_ROOT

EMPTY_FUNCTION = REPO_ROOT / "tests/bench/empty_function/main.py"  # the floor every cold start is compared with


def empty_ok(url: str) -> bool:
    return httpx.get(url + "/", timeout=5).status_code == 200


def spawn_until(argv: list[str], env: dict[str, str], port: int, ok: Callable[[str], bool]) -> float:
    """Seconds from spawning ``argv`` to the first request for which ``ok(base_url)`` is true."""
    started = time.perf_counter()
    proc = ManagedProcess("cold", argv, env=env).start()
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            if not proc.alive():
                raise RuntimeError(f"process exited:\n{proc.output()[-2000:]}")
            try:
                if ok(url):
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.005)
    finally:
        proc.stop()
