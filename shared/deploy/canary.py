"""Canary releases of one Cloud Run service (ws_bridge, or the service behind a gen2 function).

A release: wait until the candidate revision is ready (it gets no traffic before), tag it ``candidate`` and
smoke-test its tagged URL, then move traffic in steps (default 5/25/50/100 %). At each step the gate
(:mod:`shared.deploy.gate`) compares candidate and stable from Cloud Monitoring every ``check_interval_s``
over a trailing window of that step; a step ends after its bake time and one passing gate over a full
window. A failing gate, a hold that times out, or an operator's abort rolls back: 100 % to the stable
revision, the candidate kept tagged ``rolled-back`` for inspection, one structured ERROR log entry
(``event=release_rolled_back``, picked up by the alert policy) and a non-zero exit status.

The release's state lives on the service itself (traffic split and tags ``stable`` / ``candidate``), so
``watch`` and ``abort`` work from any machine while ``start`` runs elsewhere (a Cloud Run job), and a release
notices an abort at its next check because the split is no longer the one it set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.deploy.clock import Clock
from shared.deploy.errors import DeployError
from shared.deploy.gate import Verdict, evaluate
from shared.deploy.health import HealthResult, check_ready
from shared.deploy.metrics import MonitoringReader, RevisionFigures
from shared.deploy.release_policy import ReleasePolicy
from shared.deploy.traffic import UPDATE_TIMEOUT_S, RevisionInfo, ServiceStatus, TrafficManager

log = logging.getLogger("deploy.release")

TAG_STABLE = "stable"
TAG_CANDIDATE = "candidate"
TAG_ROLLED_BACK = "rolled-back"
TAG_PREVIOUS = "previous"
READY_POLL_S = 10.0

# Exit statuses of ``python -m shared.deploy release start`` (0: promoted, 3: usage or API error).
EXIT_ROLLED_BACK = 5
EXIT_NOT_READY = 6
EXIT_ABORTED = 7
EXIT_INSUFFICIENT = 8

Split = dict[str, tuple[int, str]]  # revision -> (percent, tag)


@dataclass
class Progress:
    """One line of a release's life, handed to ``on_progress`` (the CLI prints it; tests record it)."""

    at: float
    service: str
    phase: str  # ready, smoke, step, gate, promoted, rolled_back, aborted
    percent: int
    split: dict[str, int]
    verdict: Verdict | None = None
    note: str = ""


@dataclass
class ReleaseResult:
    service: str
    candidate: str
    stable: str
    outcome: str  # promoted, already_serving
    history: list[Progress] = field(default_factory=list)


class ReleaseEngine:
    def __init__(
        self,
        manager: TrafficManager,
        reader: MonitoringReader,
        policy: ReleasePolicy,
        clock: Clock,
        health_check: Callable[..., HealthResult] = check_ready,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.manager = manager
        self.reader = reader
        self.policy = policy
        self.clock = clock
        self.health_check = health_check
        self.on_progress = on_progress
        self.history: list[Progress] = []

    # -- traffic ----------------------------------------------------------------------------------------
    def _apply(self, service: str, split: Split) -> Any:
        return set_split(self.manager, service, split)

    def _status(self, service: str) -> ServiceStatus:
        return self.manager.status(service)

    @staticmethod
    def _split_of(status: ServiceStatus) -> dict[str, int]:
        return {r.name: r.percent for r in status.revisions if r.percent}

    def _emit(self, service: str, phase: str, percent: int, split: dict[str, int], **kw: Any) -> Progress:
        p = Progress(self.clock.now(), service, phase, percent, split, **kw)
        self.history.append(p)
        if self.on_progress:
            self.on_progress(p)
        return p

    # -- release ----------------------------------------------------------------------------------------
    def run(self, service: str, revision: str | None = None, token: str | None = None) -> ReleaseResult:
        status = self._status(service)
        candidate = self.manager._pick(status, revision)
        stable = self._stable(status)
        if candidate.name == stable.name:
            # Pin the traffic to the revision (a service created with LATEST would otherwise hand every
            # new revision 100 % at once, before any release judged it).
            self._apply(service, {stable.name: (100, TAG_STABLE)})
            return ReleaseResult(service, candidate.name, stable.name, "already_serving", self.history)
        if TAG_ROLLED_BACK in candidate.tags:
            raise DeployError(
                "candidate_rolled_back",
                f"{candidate.name} was rolled back before; deploy a new revision (or remove its "
                f"{TAG_ROLLED_BACK!r} tag to release it again on purpose)",
            )
        log.info(
            "release started",
            extra={"event": "release_started", "service": service, "candidate": candidate.name, "stable": stable.name},
        )
        self._wait_ready(service, candidate.name, stable.name)
        self._smoke(service, candidate.name, stable.name, token)
        for percent in self.policy.steps:
            if percent == 100:
                self._apply(service, {candidate.name: (100, TAG_STABLE), stable.name: (0, TAG_PREVIOUS)})
                self._emit(service, "promoted", 100, {candidate.name: 100})
                log.info(
                    "release promoted",
                    extra={
                        "event": "release_promoted",
                        "service": service,
                        "candidate": candidate.name,
                        "stable": stable.name,
                    },
                )
                return ReleaseResult(service, candidate.name, stable.name, "promoted", self.history)
            self._step(service, candidate.name, stable.name, percent)
        raise AssertionError("steps end with 100")  # the policy validator guarantees it

    def _stable(self, status: ServiceStatus) -> RevisionInfo:
        serving = status.serving()
        if len(serving) == 1 and serving[0].percent == 100:
            return serving[0]
        raise DeployError(
            "release_in_progress",
            f"{status.service} splits traffic ({', '.join(f'{r.name} {r.percent}%' for r in serving)}); "
            "finish or abort that release first",
        )

    def _wait_ready(self, service: str, candidate: str, stable: str) -> None:
        deadline = self.clock.now() + self.policy.ready_timeout_s
        while True:
            info = self.manager._pick(self._status(service), candidate)
            if info.ready:
                self._emit(service, "ready", 0, {stable: 100}, note=f"{candidate} ready")
                return
            failed = info.ready_state == "CONDITION_FAILED"
            if failed or self.clock.now() >= deadline:
                self._emit(service, "not_ready", 0, {stable: 100}, note=info.ready_message)
                log.error(
                    "release refused: candidate not ready",
                    extra={
                        "event": "release_not_ready",
                        "service": service,
                        "candidate": candidate,
                        "stable": stable,
                        "reason": f"{info.ready_state}: {info.ready_message or '-'}",
                    },
                )
                raise DeployError(
                    "candidate_not_ready",
                    f"{candidate} is not ready ({info.ready_state}: {info.ready_message or '-'}); it got no traffic",
                    exit_code=EXIT_NOT_READY,
                )
            self.clock.sleep(READY_POLL_S)

    def _smoke(self, service: str, candidate: str, stable: str, token: str | None) -> None:
        svc = self._apply(service, {stable: (100, TAG_STABLE), candidate: (0, TAG_CANDIDATE)})
        uris = [t.uri for t in svc.traffic_statuses if t.tag == TAG_CANDIDATE and t.uri]
        if not uris:
            self._rollback(service, candidate, stable, 0, "Cloud Run gave no URL for the candidate tag", None)
        url = uris[0].rstrip("/") + self.policy.smoke_path
        result = self.health_check(url, token=token)
        self._emit(service, "smoke", 0, {stable: 100}, note=f"{url} -> {result.status}")
        if not result.ok:
            self._rollback(
                service,
                candidate,
                stable,
                0,
                f"smoke test {url} answered {result.status} after {result.attempts} attempt(s)",
                None,
                code="smoke_failed",
                exit_code=EXIT_NOT_READY,
            )

    def _step(self, service: str, candidate: str, stable: str, percent: int) -> None:
        gate = self.policy.gate
        expected = {candidate: percent, stable: 100 - percent}
        self._apply(service, {stable: (100 - percent, TAG_STABLE), candidate: (percent, TAG_CANDIDATE)})
        step_start = self.clock.now()
        self._emit(service, "step", percent, expected)
        while True:
            self.clock.sleep(gate.check_interval_s)
            now = self.clock.now()
            self._check_not_aborted(service, candidate, stable, percent, expected)
            end = now - gate.ingest_delay_s
            start = max(step_start, end - gate.window_s)
            verdict = self.gate(service, candidate, stable, start, end)
            full_window = end - start >= gate.window_s
            self._emit(service, "gate", percent, expected, verdict=verdict, note=f"window {end - start:.0f}s")
            log.info(
                "release gate",
                extra={
                    "event": "release_gate",
                    "service": service,
                    "candidate": candidate,
                    "percent": percent,
                    "outcome": verdict.outcome,
                    "reason": verdict.reason(),
                },
            )
            if verdict.outcome == "fail":
                self._rollback(service, candidate, stable, percent, verdict.reason(), verdict)
            baked = now - step_start >= self.policy.bake_s
            if not baked:
                continue
            if verdict.outcome == "pass" and full_window:
                return
            if verdict.outcome == "insufficient":
                if gate.insufficient_traffic == "promote_after_bake":
                    log.warning(
                        "release step advanced without judgement: too little traffic",
                        extra={
                            "event": "release_unjudged",
                            "service": service,
                            "candidate": candidate,
                            "percent": percent,
                            "reason": verdict.reason(),
                        },
                    )
                    self._emit(service, "unjudged", percent, expected, verdict=verdict, note=verdict.reason())
                    return
                if now - step_start >= self.policy.bake_s + gate.hold_timeout_s:
                    self._rollback(
                        service,
                        candidate,
                        stable,
                        percent,
                        f"held {now - step_start:.0f}s with too little traffic to judge ({verdict.reason()})",
                        verdict,
                        code="insufficient_traffic",
                        exit_code=EXIT_INSUFFICIENT,
                    )

    def gate(self, service: str, candidate: str, stable: str, start: float, end: float) -> Verdict:
        gate = self.policy.gate
        if end - start < 60:  # Monitoring aligns to whole minutes: nothing to judge yet
            return evaluate(gate, RevisionFigures(), RevisionFigures())
        figures = self.reader.figures(
            service,
            [candidate, stable],
            start,
            end,
            gate.start_failure_metric,
            gate.error_log_metrics,
            with_latency=gate.max_p95_ms > 0,
        )
        return evaluate(gate, figures[candidate], figures[stable])

    def _check_not_aborted(
        self, service: str, candidate: str, stable: str, percent: int, expected: dict[str, int]
    ) -> None:
        status = self._status(service)
        split = self._split_of(status)
        if split == expected:
            return
        by_name = {r.name: r for r in status.revisions}
        aborted = TAG_ROLLED_BACK in (by_name[candidate].tags if candidate in by_name else [])
        reason = "aborted by the operator" if aborted else f"traffic changed outside the release: {split}"
        self._rollback(service, candidate, stable, percent, reason, None, code="aborted", exit_code=EXIT_ABORTED)

    def _rollback(
        self,
        service: str,
        candidate: str,
        stable: str,
        percent: int,
        reason: str,
        verdict: Verdict | None,
        code: str = "rolled_back",
        exit_code: int = EXIT_ROLLED_BACK,
    ) -> None:
        roll_back(self.manager, service, candidate, stable, percent, reason, code, verdict)
        self._emit(service, "rolled_back" if code != "aborted" else "aborted", percent, {stable: 100}, note=reason)
        raise DeployError(
            code,
            f"{candidate} rolled back at {percent}%: {reason}; {stable} serves 100%, "
            f"{candidate} stays tagged {TAG_ROLLED_BACK}",
            exit_code=exit_code,
        )


def set_split(manager: TrafficManager, service: str, split: Split) -> Any:
    """Replace the service's traffic by ``split`` (every target pinned to a revision); returns the service."""
    from google.cloud import run_v2

    kind = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
    svc = manager._service(service)
    svc.traffic = [
        run_v2.TrafficTarget(type_=kind, revision=rev, percent=pct, tag=tag) for rev, (pct, tag) in split.items()
    ]
    return manager.services.update_service(service=svc).result(timeout=UPDATE_TIMEOUT_S)


def roll_back(
    manager: TrafficManager,
    service: str,
    candidate: str,
    stable: str,
    percent: int,
    reason: str,
    code: str,
    verdict: Verdict | None = None,
) -> None:
    """100 % to ``stable``, ``candidate`` kept tagged for inspection, and the log entry the alert matches."""
    set_split(manager, service, {stable: (100, TAG_STABLE), candidate: (0, TAG_ROLLED_BACK)})
    extra: dict[str, Any] = {
        "event": "release_rolled_back",
        "service": service,
        "candidate": candidate,
        "stable": stable,
        "percent": percent,
        "code": code,
        "reason": reason,
    }
    if verdict is not None:
        for who, figures in (("candidate", verdict.candidate), ("stable", verdict.stable)):
            extra[f"{who}_requests"] = figures.requests
            extra[f"{who}_share_5xx"] = round(figures.share_5xx, 4)
            extra[f"{who}_p95_ms"] = figures.p95_ms
    log.error("release rolled back", extra=extra)


def release_revisions(status: ServiceStatus) -> tuple[str | None, str | None]:
    """(candidate, stable) of the release in progress, from the tags the release set."""
    tagged = {tag: r.name for r in status.revisions for tag in r.tags}
    return tagged.get(TAG_CANDIDATE), tagged.get(TAG_STABLE)


def abort(manager: TrafficManager, service: str, reason: str = "aborted by the operator") -> ServiceStatus:
    """Operator's abort, from any machine: 100 % back to the revision tagged ``stable``, the candidate
    tagged ``rolled-back``. The running release sees the changed split at its next check and exits 7."""
    status = manager.status(service)
    candidate, stable = release_revisions(status)
    if candidate is None or stable is None:
        raise DeployError("no_release", f"{service} has no revision tagged {TAG_CANDIDATE!r}: no release to abort")
    percent = next((r.percent for r in status.revisions if r.name == candidate), 0)
    roll_back(manager, service, candidate, stable, percent, reason, "aborted")
    return manager.status(service)
