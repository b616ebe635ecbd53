"""Emulator start time and get/set latency (figures printed, no thresholds; run with -s to see them)."""

from __future__ import annotations

import pytest

from emulators.firestore.bench import measure
from emulators.implementation import OFFICIAL, OWN
from tests.fixtures.emulators import skip_unless_available


@pytest.mark.parametrize("kind", [OFFICIAL, OWN])
def test_start_and_latency_figures(kind: str) -> None:
    skip_unless_available(kind)
    figures = measure(200, kind)
    for line in figures.lines():
        print(line)
    assert figures.kind == kind and figures.n == 200
    assert 0 < figures.get_median_ms <= figures.get_p95_ms
    assert 0 < figures.set_median_ms <= figures.set_p95_ms
