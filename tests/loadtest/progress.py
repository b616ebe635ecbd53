"""A plain progress display: one line per step, and a live status line refreshed in place on a terminal."""

from __future__ import annotations

import sys
import time
from typing import IO


class Progress:
    def __init__(self, stream: IO[str] = sys.stderr, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        self.started = time.monotonic()
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._status_shown = False
        self._last_status = 0.0

    def _stamp(self) -> str:
        return f"[{time.monotonic() - self.started:6.1f}s]"

    def step(self, message: str) -> None:
        """A milestone: always printed on its own line."""
        if self.quiet:
            return
        self._clear()
        self.stream.write(f"{self._stamp()} {message}\n")
        self.stream.flush()

    def status(self, message: str, every_s: float = 0.5) -> None:
        """Live counters: rewritten in place on a terminal, printed at most every 5 s otherwise."""
        if self.quiet:
            return
        now = time.monotonic()
        if now - self._last_status < (every_s if self.tty else 5.0):
            return
        self._last_status = now
        if self.tty:
            self.stream.write(f"\r\x1b[2K{self._stamp()}   {message}")
            self._status_shown = True
        else:
            self.stream.write(f"{self._stamp()}   {message}\n")
        self.stream.flush()

    def _clear(self) -> None:
        if self._status_shown:
            self.stream.write("\r\x1b[2K")
            self._status_shown = False
