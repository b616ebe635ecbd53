"""The canary gate: candidate against stable over one window. Pure: figures in, verdict out.

A rule fails only when the candidate is bad on its own (an absolute bound) *and* worse than the stable
revision serving the same minutes (a margin), so a shared outage (a downstream API, the database) does not
blame the candidate. Below ``min_requests`` candidate requests nothing but instance start failures is
judged: one error in three requests decides nothing, and "too little traffic" is its own outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from shared.deploy.metrics import RevisionFigures
from shared.deploy.release_policy import GatePolicy

Outcome = Literal["pass", "fail", "insufficient"]


@dataclass
class Check:
    rule: str
    ok: bool
    detail: str


@dataclass
class Verdict:
    outcome: Outcome
    candidate: RevisionFigures
    stable: RevisionFigures
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def reason(self) -> str:
        if self.outcome == "insufficient":
            return next((c.detail for c in self.checks if c.rule == "min_requests"), "too little traffic")
        return "; ".join(c.detail for c in self.failed) or "all rules passed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "candidate": self.candidate.as_dict(),
            "stable": self.stable.as_dict(),
            "checks": [c.__dict__ for c in self.checks],
        }


def _share_rule(rule: str, cand: float, stable: float | None, bound: float, margin: float) -> Check:
    reference = stable or 0.0  # no judgeable stable share: compare with a perfect one (stricter)
    bad = cand > bound and cand > reference + margin
    stable_text = f"{stable:.2%}" if stable is not None else "n/a"
    return Check(rule, not bad, f"{rule} {cand:.2%} (bound {bound:.2%}, stable {stable_text} + {margin:.2%})")


def evaluate(policy: GatePolicy, candidate: RevisionFigures, stable: RevisionFigures) -> Verdict:
    checks = [
        Check(
            "start_failures",
            candidate.start_failures <= policy.max_start_failures,
            f"instance start failures {candidate.start_failures} (tolerated {policy.max_start_failures})",
        )
    ]
    enough = candidate.requests >= policy.min_requests
    checks.append(Check("min_requests", True, f"candidate requests {candidate.requests} (need {policy.min_requests})"))
    if not enough:
        outcome: Outcome = "fail" if not checks[0].ok else "insufficient"
        return Verdict(outcome, candidate, stable, checks)
    stable_judged = stable.requests >= policy.min_requests
    checks.append(
        _share_rule(
            "5xx share",
            candidate.share_5xx,
            stable.share_5xx if stable_judged else None,
            policy.max_5xx_share,
            policy.max_5xx_margin,
        )
    )
    if policy.max_p95_ms > 0 and candidate.p95_ms is not None:
        reference = stable.p95_ms if stable_judged else None
        slow = candidate.p95_ms > policy.max_p95_ms and (
            reference is None or candidate.p95_ms > reference * policy.max_p95_ratio
        )
        stable_text = f"{reference:.0f} ms" if reference is not None else "n/a"
        checks.append(
            Check(
                "p95 latency",
                not slow,
                f"p95 latency {candidate.p95_ms:.0f} ms (bound {policy.max_p95_ms:.0f} ms, "
                f"stable {stable_text} x {policy.max_p95_ratio})",
            )
        )
    if policy.error_log_metrics:
        checks.append(
            _share_rule(
                "error logs per request",
                candidate.error_log_share,
                stable.error_log_share if stable_judged else None,
                policy.max_error_log_share,
                policy.max_error_log_margin,
            )
        )
    return Verdict("fail" if any(not c.ok for c in checks) else "pass", candidate, stable, checks)
