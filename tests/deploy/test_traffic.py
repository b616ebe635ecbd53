"""The deploy helper against a fake Cloud Run Admin API over real gRPC (the client's transport is the seam),
with real HTTP health endpoints on 127.0.0.1."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from shared.config import REPO_ROOT
from shared.deploy.errors import DeployError
from shared.deploy.health import check_ready
from shared.deploy.traffic import TrafficManager, make_clients
from tests.deploy.fake_cloud_run import FakeCloudRun
from tests.deploy.health_server import HealthServer

SERVICE = "netra-ws-bridge"


@pytest.fixture
def fake() -> Iterator[FakeCloudRun]:
    server = FakeCloudRun().start()
    yield server
    server.stop()


@pytest.fixture
def health() -> Iterator[HealthServer]:
    server = HealthServer()
    yield server
    server.close()


@pytest.fixture
def manager(fake: FakeCloudRun) -> TrafficManager:
    services, revisions = make_clients(fake.address)
    quick = functools.partial(check_ready, attempts=2, interval_s=0.05, timeout_s=2.0)
    return TrafficManager(services, revisions, fake.project, fake.region, health_check=quick)


def test_status_lists_revisions_newest_first_with_readiness_and_traffic(
    fake: FakeCloudRun, manager: TrafficManager
) -> None:
    fake.add_service(SERVICE, [("r1", True), ("r2", True), ("r3", False)])
    status = manager.status(SERVICE)
    assert [r.name for r in status.revisions] == ["r3", "r2", "r1"]
    assert [r.ready for r in status.revisions] == [False, True, True]
    assert "startup probe" in status.revisions[0].ready_message
    # LATEST traffic resolves to the latest *ready* revision.
    assert {r.name: r.percent for r in status.revisions} == {"r3": 0, "r2": 100, "r1": 0}
    assert status.latest_created == "r3" and status.latest_ready == "r2"


def test_promote_moves_all_traffic_to_the_newest_ready_revision(fake: FakeCloudRun, manager: TrafficManager) -> None:
    fake.add_service(SERVICE, [("r1", True), ("r2", True)], serving="r1")
    status = manager.promote(SERVICE)
    assert fake.serving(SERVICE) == {"r2": 100}
    assert fake.updates[-1] == [("TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "r2", 100, "")]
    assert {r.name: r.percent for r in status.revisions} == {"r2": 100, "r1": 0}


def test_promote_refuses_a_revision_that_failed_its_startup_probe(fake: FakeCloudRun, manager: TrafficManager) -> None:
    """Scenario 10: /health/ready (the startup probe) never passed, so the revision must not get traffic."""
    fake.add_service(SERVICE, [("r1", True), ("r2", False)], serving="r1")
    with pytest.raises(DeployError) as err:
        manager.promote(SERVICE)
    assert err.value.code == "revision_not_ready"
    assert "r2" in err.value.message and "startup probe" in err.value.message
    assert fake.updates == []
    assert fake.serving(SERVICE) == {"r1": 100}


def test_promote_checks_the_candidate_revision_url_before_moving_traffic(
    fake: FakeCloudRun, manager: TrafficManager, health: HealthServer
) -> None:
    fake.add_service(SERVICE, [("r1", True), ("r2", True)], serving="r1")
    fake.tag_uri = health.url + "/{tag}"
    health.status = 503
    with pytest.raises(DeployError) as err:
        manager.promote(SERVICE, health_url="{revision_url}/health/ready")
    assert err.value.code == "health_check_failed"
    assert health.paths == ["/candidate/health/ready"] * 2
    # The candidate got a tag with 0 % while checked; afterwards the original traffic is back, untagged.
    assert fake.updates[0] == [
        ("TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "r1", 100, ""),
        ("TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "r2", 0, "candidate"),
    ]
    assert fake.updates[-1] == [("TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "r1", 100, "")]
    assert fake.serving(SERVICE) == {"r1": 100}

    health.status = 200
    manager.promote(SERVICE, health_url="{revision_url}/health/ready")
    assert fake.serving(SERVICE) == {"r2": 100}
    assert fake.updates[-1] == [("TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "r2", 100, "")]


def test_promote_restores_previous_traffic_when_the_public_check_fails(
    fake: FakeCloudRun, manager: TrafficManager, health: HealthServer
) -> None:
    fake.add_service(SERVICE, [("r1", True), ("r2", True)])  # LATEST -> r2
    fake.add_service("netra-auth", [("a1", True), ("a2", True)], serving="a1")
    health.status = 503
    with pytest.raises(DeployError) as err:
        manager.promote("netra-auth", verify_url=health.url + "/health/ready")
    assert err.value.code == "verify_failed" and err.value.exit_code == 4
    assert fake.serving("netra-auth") == {"a1": 100}
    assert [u[0][1] for u in fake.updates] == ["a2", "a1"]


def test_rollback_goes_to_the_previous_ready_revision(fake: FakeCloudRun, manager: TrafficManager) -> None:
    fake.add_service(SERVICE, [("r1", True), ("r2", False), ("r3", True)], serving="r3")
    status = manager.rollback(SERVICE)
    assert fake.serving(SERVICE) == {"r1": 100}  # r2 never became ready: skipped
    assert {r.name: r.percent for r in status.revisions}["r1"] == 100
    with pytest.raises(DeployError) as err:
        manager.rollback(SERVICE)
    assert err.value.code == "no_previous_revision"
    manager.rollback(SERVICE, to_revision="r3")
    assert fake.serving(SERVICE) == {"r3": 100}


def test_unknown_service_and_revision_are_clear_errors(fake: FakeCloudRun, manager: TrafficManager) -> None:
    with pytest.raises(DeployError) as err:
        manager.status("nope")
    assert err.value.code == "service_not_found" and "nope" in err.value.message
    fake.add_service(SERVICE, [("r1", True)])
    with pytest.raises(DeployError) as err:
        manager.promote(SERVICE, revision="r9")
    assert err.value.code == "revision_not_found"


def _cli(fake: FakeCloudRun, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLOUD_RUN_API_HOST": fake.address}
    return subprocess.run(
        [sys.executable, "-m", "shared.deploy", *args, "--region", fake.region, "--project", fake.project],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_status_promote_and_refusal(fake: FakeCloudRun) -> None:
    fake.add_service(SERVICE, [("r1", True), ("r2", True)], serving="r1")
    out = _cli(fake, "status", "--service", SERVICE)
    assert out.returncode == 0, out.stderr
    assert "r2" in out.stdout and "100%" in out.stdout
    out = _cli(fake, "promote", "--service", SERVICE, "--json")
    assert out.returncode == 0, out.stderr
    assert fake.serving(SERVICE) == {"r2": 100}
    out = _cli(fake, "promote", "--service", "missing")
    assert out.returncode == 3
    assert "error: service_not_found:" in out.stderr
