"""Percentiles and the summary of a set of samples."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from tests.loadtest.model import Sample


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), ``q`` in [0, 100]."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def latency_summary(samples: Iterable[Sample]) -> dict[str, Any]:
    """Count, failures and latency percentiles (ms) of successful requests, plus retry counts."""
    samples = list(samples)
    ok = [s.latency_ms for s in samples if s.ok]
    return {
        "requests": len(samples),
        "ok": len(ok),
        "failed": len(samples) - len(ok),
        "retried": sum(1 for s in samples if s.attempts > 1),
        "p50_ms": rounded(percentile(ok, 50)),
        "p95_ms": rounded(percentile(ok, 95)),
        "p99_ms": rounded(percentile(ok, 99)),
        "max_ms": rounded(max(ok) if ok else None),
    }


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(value: float | None, floor: float | None) -> float | None:
    if value is None or not floor:
        return None
    return round(value / floor, 2)


def failure_rows(samples: Iterable[Sample], limit: int = 50) -> list[dict[str, Any]]:
    """Failed requests grouped by cause: the report lists each cause once with its count and an example."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for s in samples:
        if s.ok:
            continue
        key = (s.target, s.request, s.cause or "?")
        row = groups.setdefault(
            key,
            {"target": s.target, "request": s.request, "cause": s.cause, "count": 0, "first_t_s": round(s.t_send, 3)},
        )
        row["count"] += 1
    return sorted(groups.values(), key=lambda r: -r["count"])[:limit]
