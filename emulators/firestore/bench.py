"""`python -m emulators.firestore.bench [N]`: emulator start time and get/set latency through the real client.

Prints figures only (no thresholds) for both implementations in the same run (Google's where installed, and
the project's own). Start time is spawn to first successful read, with node_modules already installed.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass

from emulators.firestore.launcher import start_firestore
from emulators.implementation import OFFICIAL, OWN, official_parts


@dataclass
class Figures:
    kind: str
    startup_s: float
    n: int
    get_median_ms: float
    get_p95_ms: float
    set_median_ms: float
    set_p95_ms: float

    def lines(self) -> list[str]:
        return [
            f"firestore emulator ({self.kind}): start (spawn to first read) {self.startup_s * 1000:.0f} ms",
            f"document get: median {self.get_median_ms:.2f} ms, p95 {self.get_p95_ms:.2f} ms (n={self.n})",
            f"document set: median {self.set_median_ms:.2f} ms, p95 {self.set_p95_ms:.2f} ms (n={self.n})",
        ]


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def measure(n: int = 200, kind: str | None = None) -> Figures:
    emulator = start_firestore("127.0.0.1", 0, kind=kind)
    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.address
    try:
        from google.cloud import firestore

        client = firestore.Client(project="netra-bench")
        ref = client.collection("bench").document("doc")
        ref.set({"n": 0, "payload": "x" * 200})  # opens the channel outside the samples
        sets: list[float] = []
        gets: list[float] = []
        for i in range(n):
            started = time.perf_counter()
            ref.set({"n": i, "payload": "x" * 200})
            sets.append((time.perf_counter() - started) * 1000)
        for _ in range(n):
            started = time.perf_counter()
            ref.get()
            gets.append((time.perf_counter() - started) * 1000)
        client._firestore_api.transport.close()  # before the server goes, or gRPC logs the GOAWAY
    finally:
        if previous is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = previous
        emulator.stop()
    return Figures(
        emulator.kind, emulator.startup_s, n, statistics.median(gets), _p95(gets), statistics.median(sets), _p95(sets)
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    n = int(args[0]) if args else 200
    missing = official_parts()[1]
    if missing:
        print(f"Google's Firestore emulator not measured: {missing}", flush=True)
    for kind in [OWN] if missing else [OFFICIAL, OWN]:
        for line in measure(n, kind).lines():
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
