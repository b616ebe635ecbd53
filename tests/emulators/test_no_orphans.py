"""No emulator process outlives a launcher killed with SIGKILL (a crashed or timed-out run), either implementation.

A clean stop signals every process group; SIGKILL leaves the launcher no chance to. Each test records the
launcher's whole process tree once the emulators answer, kills the launcher with SIGKILL and expects every
process of that tree gone: Google's Java emulators die with their launcher (PR_SET_PDEATHSIG, java started
directly rather than through gcloud -> sh -> java), the launchers with whatever started them (stack, test
fixture, load-test harness: emulators.process.ManagedProcess, and a parent watch for those started from a
worker thread), Node with the launcher's stdin.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from emulators.implementation import ENV, OFFICIAL, OWN
from shared.config import REPO_ROOT
from tests.fixtures.emulators import skip_unless_available

KINDS = pytest.mark.parametrize("kind", [OFFICIAL, OWN])


def alive(pids: list[int]) -> list[int]:
    return [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def tree(pid: int) -> dict[int, str]:
    return {c.pid: " ".join(c.cmdline()[:3]) for c in psutil.Process(pid).children(recursive=True)}


def kill_launcher_and_check(
    argv: list[str], ready: Callable[[str], bool], env: dict[str, str], expect: set[str]
) -> None:
    """Start ``argv``, wait for a stdout line that ``ready`` accepts, SIGKILL it; its tree must be gone in 20 s."""
    launcher = subprocess.Popen(
        argv, cwd=REPO_ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    before: dict[int, str] = {}
    try:
        assert launcher.stdout is not None
        seen = []
        for line in launcher.stdout:
            seen.append(line)
            if ready(line):
                break
        else:
            raise AssertionError(f"launcher exited {launcher.wait(10)} before ready: {''.join(seen)[-2000:]}")
        before = tree(launcher.pid)
        names = {psutil.Process(p).name() for p in before}
        assert expect <= names, f"expected {expect} under the launcher, found {before}"
        launcher.kill()
        launcher.wait(10)
        deadline = time.monotonic() + 20
        while alive(list(before)) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = {p: before[p] for p in alive(list(before))}
        assert left == {}, f"left behind after SIGKILL of the launcher: {left}"
    finally:
        if launcher.poll() is None:
            launcher.kill()
        for pid in alive(list(before)):  # only what this test started
            os.kill(pid, signal.SIGKILL)
        launcher.wait(10)


def ready_line(line: str) -> bool:
    return line.startswith("{") and '"ready"' in line


@KINDS
@pytest.mark.parametrize("service", ["firestore", "pubsub"])
def test_a_killed_emulator_launcher_leaves_nothing(service: str, kind: str) -> None:
    skip_unless_available(kind)
    expect = {"java"} if kind == OFFICIAL else ({"node"} if service == "firestore" else set())
    argv = [sys.executable, "-m", f"emulators.{service}", "--port", "0", "--kind", kind]
    kill_launcher_and_check(argv, ready_line, {}, expect)


@KINDS
def test_scenario_11_a_killed_stack_leaves_no_emulator(kind: str, tmp_path: Path) -> None:
    """`make run` killed hard (scenario 11's stack): its emulator launchers, Java and Node all go."""
    skip_unless_available(kind)
    argv = [sys.executable, "-m", "emulators", "up", "--only", "pubsub,firestore"]
    env = {ENV: kind, "NETRA_LOCAL_DIR": str(tmp_path / "local"), "NETRA_DISCOVERY_DIR": str(tmp_path / "disc")}
    expect = {"java"} if kind == OFFICIAL else {"node"}
    kill_launcher_and_check(argv, lambda line: "all services ready" in line, env, expect)


FIXTURE_USER = """
import sys, threading
from tests.fixtures.emulators import start_emulator
kind = sys.argv[1]
start_emulator("firestore", kind)  # from the main thread
done = threading.Event()
threading.Thread(target=lambda: (start_emulator("pubsub", kind), done.set())).start()  # and from a worker thread
done.wait()
print("fixtures ready", flush=True)
threading.Event().wait()
"""


@KINDS
def test_a_killed_test_run_leaves_no_emulator(kind: str) -> None:
    """A pytest run killed hard (or timed out) with the session's emulators started: none survives."""
    skip_unless_available(kind)
    expect = {"java"} if kind == OFFICIAL else {"node"}
    argv = [sys.executable, "-c", FIXTURE_USER, kind]
    kill_launcher_and_check(argv, lambda line: line.startswith("fixtures ready"), {}, expect)
