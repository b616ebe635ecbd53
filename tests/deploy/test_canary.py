"""Canary releases end to end on fakes: the real google-cloud-run and google-cloud-monitoring clients talk
over gRPC to in-process fakes of the Cloud Run Admin API and the Cloud Monitoring API; the smoke test hits a
real HTTP server; simulated time and traffic (tests/deploy/traffic_sim.py) stand in for bake times and
users. Policies are the shipped ones (shared/deploy/release_policy.toml), with Cloud Monitoring's 180 s
ingestion delay reproduced by the fake."""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from shared.config import REPO_ROOT
from shared.deploy import canary
from shared.deploy.canary import ReleaseEngine
from shared.deploy.errors import DeployError
from shared.deploy.health import check_ready
from shared.deploy.metrics import MonitoringReader, make_monitoring_client
from shared.deploy.release_policy import ReleasePolicy, load_policy
from shared.deploy.release_watch import render, snapshot
from shared.deploy.traffic import TrafficManager, make_clients
from tests.deploy.fake_cloud_run import FakeCloudRun
from tests.deploy.fake_monitoring import FakeMonitoring, Point
from tests.deploy.health_server import HealthServer
from tests.deploy.traffic_sim import ERROR_LOGS, START_FAILURES, Behaviour, TrafficSim

SERVICE = "netra-auth"
REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeCloudRun, FakeMonitoring, HealthServer]]:
    run, mon, health = FakeCloudRun().start(), FakeMonitoring().start(), HealthServer()
    yield run, mon, health
    run.stop()
    mon.stop()
    health.close()


@pytest.fixture
def fakes(servers: tuple[FakeCloudRun, FakeMonitoring, HealthServer]) -> tuple[FakeCloudRun, FakeMonitoring]:
    run, mon, health = servers
    run.services.clear()
    run.revisions.clear()
    run.updates.clear()
    run.tag_uri = health.url + "/{tag}"
    mon.points.clear()
    mon.queries.clear()
    mon.now = None
    mon.known_metrics = {
        "run.googleapis.com/request_count",
        "run.googleapis.com/request_latencies",
        START_FAILURES,
        ERROR_LOGS,
    }
    mon.visibility_delay_s = 180.0  # Cloud Run metrics: visible up to 180 s after sampling
    health.status = 200
    health.paths.clear()
    run.add_service(SERVICE, [("stable-1", True), ("cand-2", True)], serving="stable-1")
    return run, mon


def _engine(
    fakes: tuple[FakeCloudRun, FakeMonitoring], sim: TrafficSim, policy: ReleasePolicy
) -> tuple[ReleaseEngine, TrafficManager]:
    run, mon = fakes
    services, revisions = make_clients(run.address)
    manager = TrafficManager(services, revisions, run.project, run.region)
    reader = MonitoringReader(make_monitoring_client(mon.address), mon.project)
    quick = functools.partial(check_ready, attempts=1, timeout_s=2.0)
    return ReleaseEngine(manager, reader, policy, sim, health_check=quick), manager


def _sim(fakes: tuple[FakeCloudRun, FakeMonitoring], rps: float = 20.0, **behaviours: Behaviour) -> TrafficSim:
    run, mon = fakes
    return TrafficSim(run, mon, SERVICE, rps, {k.replace("_", "-"): v for k, v in behaviours.items()})


def _splits(run: FakeCloudRun) -> list[list[tuple[str, int, str]]]:
    return [[(rev, pct, tag) for _, rev, pct, tag in update] for update in run.updates]


def _step_started(engine: ReleaseEngine, percent: int) -> float:
    return next(p.at for p in engine.history if p.phase == "step" and p.percent == percent)


PRODUCTION = load_policy(SERVICE, "production")
STEP_SPLITS = [
    [("stable-1", 100, "stable"), ("cand-2", 0, "candidate")],
    [("stable-1", 95, "stable"), ("cand-2", 5, "candidate")],
    [("stable-1", 75, "stable"), ("cand-2", 25, "candidate")],
    [("stable-1", 50, "stable"), ("cand-2", 50, "candidate")],
    [("cand-2", 100, "stable"), ("stable-1", 0, "previous")],
]


def test_shipped_policy_is_stricter_than_the_seeds_rule() -> None:
    """Seeds: error rate above 10 % for 5 minutes. Every shipped service/environment judges a shorter window,
    a lower bound, a margin over stable and a minimum of requests."""
    for service in ("netra-auth", "netra-agent-api", "netra-agent-worker", "netra-ws-bridge"):
        for env in ("staging", "production"):
            gate = load_policy(service, env).gate
            assert gate.window_s < 300 and gate.max_5xx_share < 0.10 and gate.max_5xx_margin > 0
            assert gate.min_requests >= 20
    assert load_policy("netra-ws-bridge", "production").gate.max_p95_ms == 0  # WebSocket sessions, see toml
    assert load_policy(SERVICE, "staging").gate.insufficient_traffic == "promote_after_bake"
    assert PRODUCTION.gate.insufficient_traffic == "hold"


def test_healthy_candidate_reaches_100_percent_through_every_step(fakes: tuple[FakeCloudRun, FakeMonitoring]) -> None:
    run, _ = fakes
    sim = _sim(fakes)
    engine, _ = _engine(fakes, sim, PRODUCTION)
    result = engine.run(SERVICE)
    assert result.outcome == "promoted" and (result.candidate, result.stable) == ("cand-2", "stable-1")
    assert _splits(run) == STEP_SPLITS
    assert run.serving(SERVICE) == {"cand-2": 100}
    # Every step baked its time and ended on a passing gate over a full window of its own traffic.
    for percent in (5, 25, 50):
        gates = [p for p in engine.history if p.phase == "gate" and p.percent == percent]
        assert gates[-1].verdict is not None and gates[-1].verdict.outcome == "pass"
        assert gates[-1].at - _step_started(engine, percent) >= PRODUCTION.bake_s
        assert gates[-1].verdict.candidate.requests >= PRODUCTION.gate.min_requests
    assert [p.phase for p in engine.history].count("unjudged") == 0


def test_each_step_bakes_its_time_even_when_the_gate_passes_earlier(
    fakes: tuple[FakeCloudRun, FakeMonitoring],
) -> None:
    run, _ = fakes
    policy = load_policy(SERVICE, "production", bake_s=900)
    sim = _sim(fakes)
    engine, _ = _engine(fakes, sim, policy)
    assert engine.run(SERVICE).outcome == "promoted"
    starts = [p.at for p in engine.history if p.phase in ("step", "promoted")]
    assert [round(b - a) for a, b in zip(starts, starts[1:], strict=False)] == [900, 900, 900]
    first_pass = next(p for p in engine.history if p.phase == "gate" and p.verdict and p.verdict.outcome == "pass")
    assert first_pass.at - starts[0] < 900  # the gate was happy long before the bake ended


def test_5xx_rising_at_25_percent_rolls_back_within_one_gate_window(
    fakes: tuple[FakeCloudRun, FakeMonitoring], caplog: pytest.LogCaptureFixture
) -> None:
    run, _ = fakes
    sim = _sim(fakes, cand_2=Behaviour(error_rate=lambda percent: 0.08 if percent >= 25 else 0.0))
    policy = load_policy(SERVICE, "production", bake_s=900)  # a rollback must not wait for the bake to end
    engine, _ = _engine(fakes, sim, policy)
    with caplog.at_level(logging.ERROR, logger="deploy.release"), pytest.raises(DeployError) as err:
        engine.run(SERVICE)
    assert err.value.code == "rolled_back" and err.value.exit_code == canary.EXIT_ROLLED_BACK
    assert "5xx share" in err.value.message
    # Rolled back at 25 %, no later than one window after its data became visible.
    rolled = next(p for p in engine.history if p.phase == "rolled_back")
    gate = policy.gate
    assert rolled.percent == 25
    assert rolled.at - _step_started(engine, 25) <= gate.ingest_delay_s + gate.window_s
    # All traffic back on stable; the bad revision stays tagged for inspection.
    assert run.serving(SERVICE) == {"stable-1": 100}
    assert _splits(run)[-1] == [("stable-1", 100, "stable"), ("cand-2", 0, "rolled-back")]
    # The structured entry the alert policy matches (jsonPayload.event="release_rolled_back").
    entry = next(r for r in caplog.records if getattr(r, "event", "") == "release_rolled_back")
    assert (entry.service, entry.candidate, entry.stable, entry.percent) == (SERVICE, "cand-2", "stable-1", 25)
    assert entry.candidate_share_5xx > gate.max_5xx_share


def test_same_5xx_share_on_stable_is_not_blamed_on_the_candidate(fakes: tuple[FakeCloudRun, FakeMonitoring]) -> None:
    """A shared outage (both revisions 10 % 5xx) is above the bound but not above stable by the margin."""
    sim = _sim(fakes, cand_2=Behaviour(error_rate=lambda p: 0.1), stable_1=Behaviour(error_rate=lambda p: 0.1))
    engine, _ = _engine(fakes, sim, PRODUCTION)
    assert engine.run(SERVICE).outcome == "promoted"


@pytest.mark.parametrize("readiness", ["pending", False])
def test_candidate_that_never_becomes_ready_never_receives_traffic(
    fakes: tuple[FakeCloudRun, FakeMonitoring], readiness: bool | str
) -> None:
    """Scenario 10: the startup probe never passes (still starting until the timeout, or failed)."""
    run, _ = fakes
    run.add_service(SERVICE, [("stable-1", True), ("cand-2", readiness)], serving="stable-1")
    sim = _sim(fakes)
    engine, _ = _engine(fakes, sim, PRODUCTION)
    with pytest.raises(DeployError) as err:
        engine.run(SERVICE)
    assert err.value.code == "candidate_not_ready" and err.value.exit_code == canary.EXIT_NOT_READY
    assert run.updates == []  # not even a tag
    assert run.serving(SERVICE) == {"stable-1": 100}
    if readiness == "pending":
        assert sim.t - sim.started >= PRODUCTION.ready_timeout_s


def test_failed_smoke_test_gives_no_traffic(
    fakes: tuple[FakeCloudRun, FakeMonitoring], servers: tuple[FakeCloudRun, FakeMonitoring, HealthServer]
) -> None:
    run, _ = fakes
    health = servers[2]
    health.status = 503
    engine, _ = _engine(fakes, _sim(fakes), PRODUCTION)
    with pytest.raises(DeployError) as err:
        engine.run(SERVICE)
    assert err.value.code == "smoke_failed"
    assert health.paths == ["/candidate/health/ready"]  # the candidate's own tagged URL
    assert all(pct == 0 for split in _splits(run) for rev, pct, _ in split if rev == "cand-2")
    assert run.serving(SERVICE) == {"stable-1": 100}


def test_candidate_slower_at_p95_beyond_the_bound_is_rolled_back(fakes: tuple[FakeCloudRun, FakeMonitoring]) -> None:
    run, _ = fakes
    # p95 = 1.45 x latency: stable 145 ms, candidate 2900 ms (bound 1500 ms, and 20x stable).
    sim = _sim(fakes, cand_2=Behaviour(latency_ms=2000.0))
    engine, _ = _engine(fakes, sim, PRODUCTION)
    with pytest.raises(DeployError) as err:
        engine.run(SERVICE)
    assert err.value.code == "rolled_back" and "p95 latency" in err.value.message
    assert next(p for p in engine.history if p.phase == "rolled_back").percent == 5
    assert run.serving(SERVICE) == {"stable-1": 100}


def test_slow_candidate_as_slow_as_stable_is_not_blamed(fakes: tuple[FakeCloudRun, FakeMonitoring]) -> None:
    sim = _sim(fakes, cand_2=Behaviour(latency_ms=2000.0), stable_1=Behaviour(latency_ms=1900.0))
    engine, _ = _engine(fakes, sim, PRODUCTION)
    assert engine.run(SERVICE).outcome == "promoted"


def test_instance_start_failures_roll_back_even_with_little_traffic(fakes: tuple[FakeCloudRun, FakeMonitoring]) -> None:
    run, _ = fakes
    sim = _sim(fakes, rps=0.5, cand_2=Behaviour(start_failures_per_slice=1))
    engine, _ = _engine(fakes, sim, PRODUCTION)
    with pytest.raises(DeployError) as err:
        engine.run(SERVICE)
    assert err.value.code == "rolled_back" and "instance start failures" in err.value.message
    assert run.serving(SERVICE) == {"stable-1": 100}


def test_error_log_entries_per_request_roll_back(fakes: tuple[FakeCloudRun, FakeMonitoring]) -> None:
    run, _ = fakes
    sim = _sim(fakes, cand_2=Behaviour(error_logs_per_request=0.2))
    engine, _ = _engine(fakes, sim, PRODUCTION)
    with pytest.raises(DeployError) as err:
        engine.run(SERVICE)
    assert "error logs per request" in err.value.message
    assert run.serving(SERVICE) == {"stable-1": 100}


def test_too_little_traffic_holds_then_rolls_back_when_configured_to_hold(
    fakes: tuple[FakeCloudRun, FakeMonitoring],
) -> None:
    """One error on three requests decides nothing: below min_requests the step holds, then gives up."""
    run, _ = fakes
    sim = _sim(fakes, rps=0.1, cand_2=Behaviour(error_rate=lambda p: 0.3))
    engine, _ = _engine(fakes, sim, PRODUCTION)
    with pytest.raises(DeployError) as err:
        engine.run(SERVICE)
    assert err.value.code == "insufficient_traffic" and err.value.exit_code == canary.EXIT_INSUFFICIENT
    assert max(pct for split in _splits(run) for rev, pct, _ in split if rev == "cand-2") == 5  # never advanced
    held = next(p for p in engine.history if p.phase == "rolled_back")
    assert held.at - _step_started(engine, 5) >= PRODUCTION.bake_s + PRODUCTION.gate.hold_timeout_s
    assert run.serving(SERVICE) == {"stable-1": 100}


def test_too_little_traffic_promotes_after_the_bake_when_configured(fakes: tuple[FakeCloudRun, FakeMonitoring]) -> None:
    run, _ = fakes
    policy = load_policy(SERVICE, "staging")
    sim = _sim(fakes, rps=0.1, cand_2=Behaviour(error_rate=lambda p: 0.3))
    engine, _ = _engine(fakes, sim, policy)
    assert engine.run(SERVICE).outcome == "promoted"
    assert _splits(run) == STEP_SPLITS
    unjudged = [p for p in engine.history if p.phase == "unjudged"]
    assert [p.percent for p in unjudged] == [5, 25, 50]  # said explicitly, never a silent pass
    for p in unjudged:
        assert p.at - _step_started(engine, p.percent) >= policy.bake_s


def test_operator_abort_rolls_back(fakes: tuple[FakeCloudRun, FakeMonitoring]) -> None:
    """The operator aborts from another machine (own clients) while the release bakes at 25 %."""
    run, _ = fakes
    sim = _sim(fakes)
    engine, _ = _engine(fakes, sim, PRODUCTION)
    services, revisions = make_clients(run.address)
    operator = TrafficManager(services, revisions, run.project, run.region)
    aborted: list[float] = []

    def operator_aborts() -> None:
        if run.serving(SERVICE).get("cand-2") == 25:
            canary.abort(operator, SERVICE)
            aborted.append(sim.t)
        else:  # not at 25 % yet: try again a bit later
            sim.at(sim.t - sim.started + 30, operator_aborts)

    sim.at(60, operator_aborts)
    with pytest.raises(DeployError) as err:
        engine.run(SERVICE)
    assert err.value.code == "aborted" and err.value.exit_code == canary.EXIT_ABORTED
    assert aborted and engine.history[-1].at - aborted[0] <= PRODUCTION.gate.check_interval_s
    assert run.serving(SERVICE) == {"stable-1": 100}
    assert _splits(run)[-1] == [("stable-1", 100, "stable"), ("cand-2", 0, "rolled-back")]
    assert max(pct for split in _splits(run) for rev, pct, _ in split if rev == "cand-2") == 25


def test_abort_without_a_release_is_a_clear_error(fakes: tuple[FakeCloudRun, FakeMonitoring]) -> None:
    run, _ = fakes
    services, revisions = make_clients(run.address)
    with pytest.raises(DeployError) as err:
        canary.abort(TrafficManager(services, revisions, run.project, run.region), SERVICE)
    assert err.value.code == "no_release"
    assert run.updates == []


def test_policy_layers_and_refusals(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "p.toml"  # type: ignore[operator]
    path.write_text(
        "[default]\nbake_s = 100\n[default.gate]\nmin_requests = 10\n"
        "[env.staging]\nbake_s = 50\n[service.x.gate]\nmin_requests = 20\n"
        "[env.staging.service.x]\nsteps = [10, 100]\n"
    )
    p = load_policy("x", "staging", path)
    assert (p.bake_s, p.gate.min_requests, p.steps) == (50, 20, [10, 100])
    assert load_policy("y", "production", path).bake_s == 100
    assert load_policy("x", "staging", path, bake_s=7).bake_s == 7
    for bad, where in (
        ("[default.gate]\nmax_5xx_shar = 0.5\n", "max_5xx_shar"),  # a typo must not loosen the gate
        ("[default]\nsteps = [50, 25, 100]\n", "steps"),
        ("[default.gate]\nwindow_s = 300\n", "window_s"),
    ):
        path.write_text(bad)
        with pytest.raises(DeployError) as err:
            load_policy("x", "staging", path)
        assert err.value.code == "bad_policy" and where in err.value.message


def test_a_missing_log_based_metric_stops_the_release_instead_of_passing(
    fakes: tuple[FakeCloudRun, FakeMonitoring],
) -> None:
    run, mon = fakes
    sim = _sim(fakes)
    mon.known_metrics.discard(ERROR_LOGS)
    engine, _ = _engine(fakes, sim, PRODUCTION)
    with pytest.raises(DeployError) as err:
        engine.run(SERVICE)
    assert err.value.code == "metric_missing" and ERROR_LOGS in err.value.message


def test_watch_shows_step_split_and_gate_figures_while_the_release_runs(
    fakes: tuple[FakeCloudRun, FakeMonitoring],
) -> None:
    sim = _sim(fakes, cand_2=Behaviour(latency_ms=200.0))
    engine, manager = _engine(fakes, sim, PRODUCTION)
    views: list[str] = []
    reader = engine.reader
    # 5 % from 0 s, 25 % from 360 s, 50 % from 720 s; the view at 900 s judges 540..720 s (180 s delay).
    for t in (30, 900):
        sim.at(t, lambda: views.append(render(snapshot(manager, reader, PRODUCTION, sim, SERVICE))))
    engine.run(SERVICE)
    views.append(render(snapshot(manager, reader, PRODUCTION, sim, SERVICE)))
    assert "step 1/4 (5%)" in views[0] and "stable-1 95%  cand-2 5%" in views[0] and "INSUFFICIENT" in views[0]
    assert "step 3/4 (50%)" in views[1] and "stable-1 50%  cand-2 50%" in views[1] and "PASS" in views[1]
    cand = next(line for line in views[1].splitlines() if line.startswith("candidate"))
    assert cand.split()[1] == "900" and cand.split()[3] == "290"  # 20 rps x 25 % x 180 s; p95 1.45 x 200 ms
    assert "no release in progress" in views[2] and "cand-2 100%" in views[2]


def _cli(run: FakeCloudRun, mon: FakeMonitoring, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLOUD_RUN_API_HOST": run.address, "CLOUD_MONITORING_API_HOST": mon.address}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "shared.deploy",
            "release",
            *args,
            "--service",
            SERVICE,
            "--region",
            run.region,
            "--project",
            run.project,
            "--env",
            "production",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_watch_abort_and_refused_start(fakes: tuple[FakeCloudRun, FakeMonitoring]) -> None:
    run, mon = fakes
    services, revisions = make_clients(run.address)
    manager = TrafficManager(services, revisions, run.project, run.region)
    canary.set_split(manager, SERVICE, {"stable-1": (75, "stable"), "cand-2": (25, "candidate")})
    now = time.time()
    for rev, n, errors in (("cand-2", 400, 40), ("stable-1", 1200, 0)):
        for code_class, count in (("2xx", n - errors), ("5xx", errors)):
            if count:
                mon.add(
                    Point(
                        now - 300,
                        now - 240,
                        "run.googleapis.com/request_count",
                        rev,
                        SERVICE,
                        {"response_code_class": code_class},
                        count,
                    )
                )
    out = _cli(run, mon, "watch", "--once")
    assert out.returncode == 0, out.stderr
    assert "step 2/4 (25%)" in out.stdout and "FAIL" in out.stdout and "5xx share 10.00%" in out.stdout

    out = _cli(run, mon, "abort")
    assert out.returncode == 0, out.stderr
    assert run.serving(SERVICE) == {"stable-1": 100}
    assert "release_rolled_back" in out.stderr  # the structured entry (text format locally)
    out = _cli(run, mon, "abort")
    assert out.returncode == 3 and "error: no_release:" in out.stderr

    run.add_service(SERVICE, [("stable-1", True), ("cand-2", False)], serving="stable-1")
    out = _cli(run, mon, "start")
    assert out.returncode == canary.EXIT_NOT_READY and "error: candidate_not_ready:" in out.stderr
    assert run.serving(SERVICE) == {"stable-1": 100}


def test_a_first_deploy_on_latest_is_pinned_and_a_rolled_back_candidate_is_not_released_again(
    fakes: tuple[FakeCloudRun, FakeMonitoring],
) -> None:
    run, _ = fakes
    run.add_service(SERVICE, [("only-1", True)])  # as Terraform creates it: LATEST 100 %
    engine, _ = _engine(fakes, _sim(fakes), PRODUCTION)
    assert engine.run(SERVICE).outcome == "already_serving"
    assert _splits(run) == [[("only-1", 100, "stable")]]  # later revisions get no traffic by themselves

    run.add_service(SERVICE, [("stable-1", True), ("cand-2", True)], serving="stable-1")
    sim = _sim(fakes, cand_2=Behaviour(error_rate=lambda p: 0.5))
    engine, _ = _engine(fakes, sim, PRODUCTION)
    with pytest.raises(DeployError):
        engine.run(SERVICE)
    updates = len(run.updates)
    with pytest.raises(DeployError) as err:
        engine.run(SERVICE)  # e.g. the apply run again: the same bad revision must not get traffic again
    assert err.value.code == "candidate_rolled_back" and len(run.updates) == updates


def test_cli_release_interrupted_by_sigterm_rolls_back(
    fakes: tuple[FakeCloudRun, FakeMonitoring], servers: tuple[FakeCloudRun, FakeMonitoring, HealthServer]
) -> None:
    """A cancelled job execution (SIGTERM) or Ctrl-C mid-release: traffic back on stable, exit 7."""
    run, mon = fakes
    env = {**os.environ, "CLOUD_RUN_API_HOST": run.address, "CLOUD_MONITORING_API_HOST": mon.address}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared.deploy", "release", "start", "--service", SERVICE, "--region", run.region,
         "--project", run.project, "--env", "production"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while run.serving(SERVICE).get("cand-2") != 5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert run.serving(SERVICE) == {"stable-1": 95, "cand-2": 5}, proc.stderr.read() if proc.poll() else ""
        assert servers[2].paths == ["/candidate/health/ready"]  # smoke test of the tagged URL came first
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == canary.EXIT_ABORTED, stderr
    assert run.serving(SERVICE) == {"stable-1": 100}
    assert _splits(run)[-1] == [("stable-1", 100, "stable"), ("cand-2", 0, "rolled-back")]
    assert "event=release_rolled_back" in stderr
