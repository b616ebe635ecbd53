"""A real service process (functions-framework, the shared startup manager) against a real PostgreSQL
that is missing, late or unmigrated."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import httpx

from emulators.postgres import EmbeddedPostgres
from shared.config import REPO_ROOT

SOURCE = "tests/shared/sample_service/main.py"


def run_migrations(url: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "shared.db.migrate"],
        cwd=REPO_ROOT,
        check=True,
        env={"DATABASE_URL": url, "NETRA_ENV": "test", "PATH": "/usr/bin:/bin"},
        capture_output=True,
    )


def test_scenarios_1_4_10_not_ready_until_migrated_then_ready_without_restart(
    start_function, fresh_db_url: str
) -> None:
    """Scenario 1: the database does not exist yet; the service reports it until the migration job has run,
    then becomes ready without a restart. Scenario 4: the missing migration is named. Scenario 10: ready is
    false while live stays true."""
    proc, url = start_function(SOURCE, "sample", {"DATABASE_URL": fresh_db_url})
    deadline = time.monotonic() + 20
    body = {}
    while time.monotonic() < deadline:
        response = httpx.get(f"{url}/health/ready")
        assert response.status_code == 503
        body = response.json()
        if "does not exist" in str(body):
            break
        time.sleep(0.2)
    assert "does not exist yet" in str(body["waiting_for"]), body
    assert response.headers["Retry-After"]
    assert httpx.get(f"{url}/health/live").status_code == 200
    count = httpx.get(f"{url}/count", timeout=30)
    assert count.status_code == 503 and count.json()["error"]["code"].endswith("_unavailable")
    assert count.headers["Retry-After"]

    # The database exists but holds no migrations: the missing one is named (scenario 4).
    subprocess.run(
        [sys.executable, "-m", "shared.db.migrate", "--target", "0"],
        cwd=REPO_ROOT,
        check=True,
        env={"DATABASE_URL": fresh_db_url, "NETRA_ENV": "test"},
        capture_output=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/health/ready").json()
        if "0001_initial" in str(body):
            break
        time.sleep(0.2)
    assert "missing migration(s) 0001_initial" in str(body), body
    assert "missing migration" in proc.output(), "the reason is logged too"

    pid = proc.pid
    run_migrations(fresh_db_url)
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/health/ready").status_code != 200:
        assert time.monotonic() < deadline, httpx.get(f"{url}/health/startup").json()
        time.sleep(0.2)
    assert proc.pid == pid and proc.alive(), "ready without a restart"
    assert httpx.get(f"{url}/count").json()["users"] == 0


def test_scenario_6_database_up_three_seconds_late_requests_wait_and_succeed(start_function, tmp_path) -> None:
    """Scenario 6: the database comes up 3 s after the service: requests made meanwhile wait (bounded)
    and then succeed; none gets a 500."""
    pg = EmbeddedPostgres(tmp_path / "late-pg").start()
    run_migrations(pg.url)
    pg.stop()
    try:
        proc, url = start_function(SOURCE, "sample", {"DATABASE_URL": pg.url, "STARTUP_WAIT_SECONDS": "20"})
        results: list[int] = []

        def request() -> None:
            results.append(httpx.get(f"{url}/count", timeout=60).status_code)

        threads = [threading.Thread(target=request) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(3)
        assert httpx.get(f"{url}/health/ready").status_code == 503
        pg.start()
        for t in threads:
            t.join(60)
        assert results == [200] * 8, results
        body = httpx.get(f"{url}/count").json()
        assert body["pool_opened"] <= 5
    finally:
        pg.destroy()
