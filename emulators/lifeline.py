"""Child processes that die with their parent, even when the parent is killed with SIGKILL.

A clean stop signals every process group; a parent killed hard runs no clean-up at all, so the child must
learn of it by itself. On Linux the kernel does that: PR_SET_PDEATHSIG sends the child a signal when the thread
that forked it exits. It is set by util-linux's ``setpriv --pdeathsig``, which then execs the real command
(``with_parent_death``). Not with a Python ``preexec_fn``: that forces fork() instead of vfork() in a parent
whose gRPC threads' fork handlers then abort the child now and then (seen: SIGABRT, "epoll_wait error: Bad
file descriptor").

The signal follows the *thread* that started the child, so it is only armed from the main thread (whose end
is the process's end); a child started from a worker thread would otherwise be killed when that thread
finishes. Where it is not armed (worker threads, no setpriv, not Linux) our launchers' ``ParentWatch`` is
what remains.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from types import FrameType


def with_parent_death(argv: list[str], sig: int = signal.SIGKILL) -> list[str]:
    """``argv`` run so that it receives ``sig`` when this process dies (unchanged where that cannot be armed)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return argv
    return [setpriv, "--pdeathsig", signal.Signals(sig).name, "--", *argv]


class ParentWatch:
    """Did the process that started us die? (Our parent pid changes when we are re-parented.)"""

    def __init__(self) -> None:
        self.parent = os.getppid()

    def orphaned(self) -> bool:
        return os.getppid() != self.parent


class StopSignal:
    """SIGTERM and SIGINT recorded by a handler that takes no lock; ``wait`` is the launchers' loop tick.

    Not ``threading.Event``: its ``set()`` takes the Event's lock, and Python runs a handler in the main thread,
    which may hold that lock inside ``Event.wait()`` at that moment; the handler then waits for itself forever
    (seen in CI: a killed ``make run`` left the Pub/Sub launcher and its Java running).
    """

    SLICE_S = 0.05  # how late a stop is seen at most; a sleep resumes after the handler ran (PEP 475)

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.signum: int | None = None
        self._signals = signals
        for sig in signals:
            signal.signal(sig, self._record)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum  # a plain attribute store: no lock, nothing that can block

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to ``timeout_s``; True as soon as a stop signal has arrived."""
        deadline = time.monotonic() + timeout_s
        while self.signum is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, self.SLICE_S))
        return True

    def ignore_further(self) -> None:
        """While stopping, so that a second Ctrl-C cannot interrupt the clean-up and leave a child behind."""
        for sig in self._signals:
            signal.signal(sig, signal.SIG_IGN)
