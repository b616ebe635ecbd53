"""Simulated time and traffic for release tests: the release engine's clock. Every ``sleep`` advances time in
10 s slices and records, for each slice, what each revision served under the split the fake Cloud Run
holds at that moment (requests by response class, latency samples, start failures, error log entries) as
points in the fake Cloud Monitoring. So the gate sees exactly the traffic the release's own steps sent to
the candidate, and a bake of minutes takes milliseconds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.deploy.fake_cloud_run import FakeCloudRun
from tests.deploy.fake_monitoring import FakeMonitoring, Point

SLICE_S = 10.0
START_FAILURES = "logging.googleapis.com/user/netra/instance_start_failures"
ERROR_LOGS = "logging.googleapis.com/user/netra/error_logs"


@dataclass
class Behaviour:
    """How a revision answers. ``error_rate`` gets the revision's current traffic percent."""

    error_rate: Callable[[int], float] = lambda percent: 0.0
    latency_ms: float = 100.0
    start_failures_per_slice: int = 0
    error_logs_per_request: float = 0.0


class TrafficSim:
    def __init__(
        self,
        cloud_run: FakeCloudRun,
        monitoring: FakeMonitoring,
        service: str,
        rps: float,
        behaviours: dict[str, Behaviour],
        start: float = 1_767_225_600.0,
    ) -> None:
        self.cloud_run = cloud_run
        self.monitoring = monitoring
        self.service = service
        self.rps = rps
        self.behaviours = behaviours
        self.t = start
        self.started = start
        self.hooks: list[tuple[float, Callable[[], None]]] = []
        monitoring.now = self.now
        monitoring.known_metrics |= {START_FAILURES, ERROR_LOGS}

    def now(self) -> float:
        return self.t

    def at(self, seconds_from_start: float, action: Callable[[], None]) -> None:
        """Run ``action`` (e.g. an operator's abort) once simulated time reaches it."""
        self.hooks.append((self.started + seconds_from_start, action))

    def sleep(self, seconds: float) -> None:
        end = self.t + seconds
        while self.t < end:
            dt = min(SLICE_S, end - self.t)
            self._serve(self.t, self.t + dt)
            self.t += dt
            for due, action in [h for h in self.hooks if h[0] <= self.t]:
                self.hooks.remove((due, action))
                action()

    def _serve(self, start: float, end: float) -> None:
        for revision, percent in self.cloud_run.serving(self.service).items():
            b = self.behaviours.get(revision, Behaviour())
            n = round(self.rps * (end - start) * percent / 100)
            errors = round(n * b.error_rate(percent))
            mon, svc = self.monitoring, self.service
            for code_class, count in (("2xx", n - errors), ("5xx", errors)):
                if count:
                    mon.add(
                        Point(
                            start,
                            end,
                            "run.googleapis.com/request_count",
                            revision,
                            svc,
                            {"response_code_class": code_class},
                            count,
                        )
                    )
            if n:
                # Evenly spread from 0.5x to 1.5x the revision's latency: p95 = 1.45x.
                samples = [b.latency_ms * (0.5 + (i + 0.5) / n) for i in range(n)]
                mon.add(Point(start, end, "run.googleapis.com/request_latencies", revision, svc, samples=samples))
            if b.start_failures_per_slice:
                mon.add(Point(start, end, START_FAILURES, revision, svc, count=b.start_failures_per_slice))
            logs = round(n * b.error_logs_per_request)
            if logs:
                mon.add(Point(start, end, ERROR_LOGS, revision, svc, count=logs))
