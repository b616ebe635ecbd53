"""Run a blocking call with a time limit (the startup manager's attempts, the worker's pipeline).

Python cannot stop a thread from outside, so the call runs on a daemon thread of its own and the caller
stops waiting when the time is up; the thread finishes (or stays blocked) on its own. Hand-written because
``concurrent.futures`` would keep a pool thread busy and block interpreter exit on a call that never returns.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from shared.errors import NetraError

T = TypeVar("T")


class CallTimedOut(NetraError, TimeoutError):
    """The call did not finish in time; it may still be running on its thread."""


def call_with_timeout(fn: Callable[[], T], timeout_s: float, what: str, thread_name: str) -> T:
    """``fn()``'s value, or the exception it raised (any BaseException, raised here in the caller), or
    :class:`CallTimedOut` (``"<what> took longer than <timeout_s>s"``) after ``timeout_s``. The call sees the
    caller's context variables (log context)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the waiting thread
            box["error"] = exc

    thread = threading.Thread(target=contextvars.copy_context().run, args=(target,), name=thread_name, daemon=True)
    thread.start()
    thread.join(max(0.0, timeout_s))
    if thread.is_alive():
        raise CallTimedOut(f"{what} took longer than {timeout_s:g}s")
    if "error" in box:
        raise box["error"]
    return box["value"]
