"""Emulator start time and get/set latency (figures printed, no thresholds; run with -s to see them)."""

from __future__ import annotations

from emulators.firestore.bench import measure


def test_start_and_latency_figures() -> None:
    figures = measure(200, official=False)
    for line in figures.lines():
        print(line)
    assert figures.kind == "npm" and figures.n == 200
    assert 0 < figures.get_median_ms <= figures.get_p95_ms
    assert 0 < figures.set_median_ms <= figures.set_p95_ms
