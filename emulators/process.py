"""Child processes of the local stack and the tests: own process group, prefixed logs, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import httpx

from emulators.lifeline import with_parent_death
from shared.config import REPO_ROOT

COLORS = ["36", "33", "35", "32", "34", "31", "96", "93"]


class ManagedProcess:
    """A command in its own process group whose output lines are prefixed with its name.

    The command gets SIGTERM if this process dies without stopping it (even by SIGKILL; see emulators.lifeline).
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        cwd: Path = REPO_ROOT,
        sink: IO[str] | None = None,
        color: int = 0,
        log_file: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.sink = sink
        self.color = COLORS[color % len(COLORS)]
        self.log_file = log_file
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> ManagedProcess:
        self.proc = subprocess.Popen(
            with_parent_death(self.argv, signal.SIGTERM),
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._pump, name=f"log-{self.name}", daemon=True)
        self._reader.start()
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        log = open(self.log_file, "a") if self.log_file else None  # noqa: SIM115 - closed below
        tty = self.sink is not None and getattr(self.sink, "isatty", lambda: False)()
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if len(self.lines) > 5000:
                del self.lines[:1000]
            if log:
                log.write(line + "\n")
                log.flush()
            if self.sink is not None:
                prefix = f"\x1b[{self.color}m{self.name:>12}\x1b[0m |" if tty else f"{self.name:>12} |"
                self.sink.write(f"{prefix} {line}\n")
                self.sink.flush()
        if log:
            log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, check: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode if self.proc else '?'} "
                    f"before {what}:\n{self.output()[-3000:]}"
                )
            try:
                if check():
                    return
            except Exception:  # noqa: S110 - not up yet
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.name}: {what} not reached within {timeout_s:g}s:\n{self.output()[-3000:]}")

    def wait_http(self, url: str, timeout_s: float = 30.0, status: int | None = 200) -> None:
        def ok() -> bool:
            response = httpx.get(url, timeout=2.0)
            return status is None or response.status_code == status

        self.wait_for(ok, timeout_s, f"GET {url} -> {status}")

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout_s: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(5)
        else:
            # The leader is gone; make sure nothing it started lingers in its group.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._reader:
            self._reader.join(2)
        return self.proc.returncode

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait(5)


def functions_framework_argv(source: Path, target: str, port: int, signature: str = "http") -> list[str]:
    return [
        sys.executable,
        "-m",
        "functions_framework",
        f"--source={source}",
        f"--target={target}",
        f"--signature-type={signature}",
        "--host=127.0.0.1",
        f"--port={port}",
    ]
