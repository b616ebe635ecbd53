"""A stop signal ends a launcher's wait loop wherever in that loop it lands (scenario 11: `make run` and the
emulator launchers must stop, and take their emulators with them, on SIGTERM or Ctrl-C).

CI once left the Pub/Sub launcher and its Java running after its parent died: the launcher's SIGTERM handler
called ``threading.Event.set()``, which takes the Event's lock, and Python runs handlers in the main thread,
which may hold that very lock inside ``Event.wait()`` at that instant: the handler waits for itself forever.
The window is a few bytecodes wide, so this test places the signal on every profiler event of a few wait
cycles in turn (``signal.raise_signal`` runs the handler at once, at that exact point) in a real process,
and expects each of them to end the loop.
"""

from __future__ import annotations

import subprocess
import sys

from shared.config import REPO_ROOT

CHILD = """
import signal, sys
from emulators.lifeline import StopSignal

for k in range(1, int(sys.argv[1]) + 1):
    stop = StopSignal()
    events = 0

    def land_signal_at_event_k(frame, event, arg):
        global events
        events += 1
        if events == k:
            signal.raise_signal(signal.SIGTERM)

    sys.setprofile(land_signal_at_event_k)
    while not stop.wait(0.001):
        pass
    sys.setprofile(None)
    assert stop.signum == signal.SIGTERM, stop.signum
    print(k, flush=True)
print("all stopped", flush=True)
"""

POSITIONS = 150  # several whole wait cycles of either implementation (an Event's cycle is ~30 events)


def test_scenario_11_a_stop_signal_ends_the_wait_loop_wherever_it_lands() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(POSITIONS)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        out, _ = child.communicate(timeout=20)  # ~1 s when nothing hangs
    except subprocess.TimeoutExpired:
        child.kill()
        out, _ = child.communicate()
        last = out.split()[-1] if out.split() else "0"
        raise AssertionError(f"the wait loop hung when the signal landed at profiler event {int(last) + 1}") from None
    assert child.returncode == 0 and out.strip().endswith("all stopped"), out[-500:]
