"""Scenario 15 (clients reconnect after a bridge restart): a resume reaches a fresh bridge while its event log
warms up.

The bridge warms the Firestore client in a start-up thread (functions/ws_bridge/app.py, ``event_log``) and may
already serve a resume, which reads the log in another thread. google.cloud.firestore's modules import each
other, and a first import of two of them in two threads at once made Python hand one thread a half-initialized
module: both the warm-up and the replay failed with "cannot import name 'BaseCollectionGroup' from partially
initialized module" (seen in the browser test of a killed bridge: the page never got its replay). Each case
runs in a fresh process, so the library is imported for the first time, with the replay started at a range of
moments into the warm-up (the window was 20-200 ms wide here), against the real emulator.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shared.config import REPO_ROOT

CHILD = """
import sys, threading, time
from functions.ws_bridge import replay
from shared.firestore import get_client

failures = []

def warm_up():
    try:
        get_client()
    except Exception as exc:
        failures.append(f"warm-up: {exc!r}")

def resume():
    time.sleep(float(sys.argv[1]))
    try:
        assert replay.owned_runs("u-import", "t-import", None) == []
        assert replay.read_page("r-import", 0, 10) == []
    except Exception as exc:
        failures.append(f"replay: {exc!r}")

threads = [threading.Thread(target=warm_up), threading.Thread(target=resume)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("; ".join(failures) or "ok")
"""


@pytest.mark.parametrize("delay_s", [0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3])
def test_scenario_15_a_replay_during_the_event_log_warm_up_reads_the_log(
    delay_s: float, firestore_emulator_host: str, firestore_prefix: str
) -> None:
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": firestore_emulator_host, "GOOGLE_CLOUD_PROJECT": "netra-import"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(delay_s)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok", out.stdout[-2000:]
