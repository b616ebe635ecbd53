"""``release watch``: a live view of a release from anywhere, read from the service itself (split, tags)
and from Cloud Monitoring (the gate's figures over the window the release is judging now)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.deploy.canary import TAG_CANDIDATE, TAG_ROLLED_BACK, TAG_STABLE, ReleaseEngine, release_revisions
from shared.deploy.clock import Clock
from shared.deploy.gate import Verdict
from shared.deploy.metrics import MonitoringReader
from shared.deploy.release_policy import ReleasePolicy
from shared.deploy.traffic import ServiceStatus, TrafficManager


@dataclass
class View:
    service: str
    at: float
    split: dict[str, int]
    candidate: str | None
    stable: str | None
    step: int  # 1-based index in the policy's steps; 0 = tagged, no traffic yet
    steps: list[int]
    verdict: Verdict | None
    window: tuple[float, float]


def snapshot(
    manager: TrafficManager, reader: MonitoringReader, policy: ReleasePolicy, clock: Clock, service: str
) -> View:
    status: ServiceStatus = manager.status(service)
    candidate, stable = release_revisions(status)
    split = {r.name: r.percent for r in status.revisions if r.percent}
    now = clock.now()
    end = now - policy.gate.ingest_delay_s
    start = end - policy.gate.window_s
    verdict = None
    step = 0
    if candidate and stable:
        percent = split.get(candidate, 0)
        step = next((i + 1 for i, s in enumerate(policy.steps) if s == percent), 0)
        verdict = ReleaseEngine(manager, reader, policy, clock).gate(service, candidate, stable, start, end)
    return View(service, now, split, candidate, stable, step, policy.steps, verdict, (start, end))


def _hhmmss(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def render(view: View) -> str:
    lines = [f"{view.service}  {_hhmmss(view.at)} UTC"]
    order = [view.stable, view.candidate]  # stable first, then candidate, then anything else
    ranked = sorted(view.split.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else 2, -kv[1]))
    split = "  ".join(f"{rev} {pct}%" for rev, pct in ranked)
    if not view.candidate:
        lines.append(f"no release in progress (no revision tagged {TAG_CANDIDATE!r}); traffic: {split}")
        return "\n".join(lines)
    percent = view.split.get(view.candidate, 0)
    where = f"step {view.step}/{len(view.steps)} ({percent}%)" if view.step else f"tagged, {percent}% (smoke test)"
    lines.append(f"release   {view.candidate} ({TAG_CANDIDATE}) <- {view.stable} ({TAG_STABLE})   {where}")
    lines.append(f"traffic   {split}")
    if view.verdict is not None:
        v = view.verdict
        lines.append(
            f"gate      {_hhmmss(view.window[0])}-{_hhmmss(view.window[1])} UTC: {v.outcome.upper()}  {v.reason()}"
        )
        lines.append(f"          {'requests':>9} {'5xx':>7} {'p95 ms':>8} {'start fail':>10} {'err logs/req':>12}")
        for who, f in (("candidate", v.candidate), ("stable", v.stable)):
            p95 = f"{f.p95_ms:.0f}" if f.p95_ms is not None else "-"
            lines.append(
                f"{who:<9} {f.requests:>9} {f.share_5xx:>7.2%} {p95:>8} {f.start_failures:>10} "
                f"{f.error_log_share:>12.2%}"
            )
    return "\n".join(lines)


def watch(
    manager: TrafficManager,
    reader: MonitoringReader,
    policy: ReleasePolicy,
    clock: Clock,
    service: str,
    out: Callable[[str], None],
    interval_s: float = 15.0,
    once: bool = False,
) -> View:
    """Print the view every ``interval_s`` until no revision is tagged ``candidate`` any more."""
    while True:
        view = snapshot(manager, reader, policy, clock, service)
        out(render(view))
        if once or not view.candidate:
            if not once:
                rolled = [r.name for r in manager.status(service).revisions if TAG_ROLLED_BACK in r.tags]
                if rolled:
                    out(f"revision(s) tagged {TAG_ROLLED_BACK!r}: {', '.join(rolled)}")
            return view
        clock.sleep(interval_s)
