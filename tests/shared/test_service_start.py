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
        if "database_missing" in str(body):
            break
        time.sleep(0.2)
    # Issue 15, finding 6: public answers carry stable codes; the database's own text goes to the log.
    assert body["waiting_for"]["database"] == {"code": "database_missing"}, body
    assert "SQLSTATE" not in str(body) and "does not exist" not in str(body)
    assert response.headers["Retry-After"]
    assert httpx.get(f"{url}/health/live").status_code == 200
    count = httpx.get(f"{url}/count", timeout=30)
    assert count.status_code == 503 and count.json()["error"]["code"].endswith("_unavailable")
    assert "SQLSTATE" not in count.text and "does not exist" not in count.text
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
    schema = body["waiting_for"]["schema"]
    assert schema["code"] == "schema_too_old" and schema["missing_migrations"][0] == "0001_initial", body
    assert "missing migration" in proc.output(), "the reason is logged too"

    pid = proc.pid
    run_migrations(fresh_db_url)
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/health/ready").status_code != 200:
        assert time.monotonic() < deadline, httpx.get(f"{url}/health/startup").json()
        time.sleep(0.2)
    assert proc.pid == pid and proc.alive(), "ready without a restart"
    assert httpx.get(f"{url}/count").json()["users"] == 0


def test_scenario_6_outage_longer_than_the_connect_budget_ends_in_200s(start_function, tmp_path) -> None:
    """Scenario 6: the database comes up about 3 s after the service, longer than the inner connect retry's budget
    (DB_CONNECT_BUDGET_S=1), so only the database component's own retries carry the start past it. Requests made
    meanwhile wait (bounded) and then succeed; a request whose wait is shorter than the outage gets 503 with
    Retry-After; none gets a 500."""
    pg = EmbeddedPostgres(tmp_path / "late-pg").start()
    run_migrations(pg.url)
    pg.stop()
    try:
        env = {"DATABASE_URL": pg.url, "STARTUP_WAIT_SECONDS": "30", "DB_CONNECT_BUDGET_S": "1"}
        proc, url = start_function(SOURCE, "sample", env)
        started = time.monotonic()
        results: list[int] = []

        def request() -> None:
            results.append(httpx.get(f"{url}/count", timeout=60).status_code)

        threads = [threading.Thread(target=request) for _ in range(8)]
        for t in threads:
            t.start()
        short = httpx.get(f"{url}/count", params={"wait_s": "0.5"}, timeout=10)
        assert short.status_code == 503, short.text
        assert short.json()["error"]["code"] == "schema_unavailable", short.text
        assert int(short.headers["Retry-After"]) >= 1
        time.sleep(max(0.0, 3 - (time.monotonic() - started)))
        assert httpx.get(f"{url}/health/ready").status_code == 503
        database = httpx.get(f"{url}/health/startup").json()["components"]["database"]
        assert database["attempts"] >= 2, f"the outage must outlast the inner budget: {database}"
        pg.start()
        for t in threads:
            t.join(60)
        assert results == [200] * 8, results
        body = httpx.get(f"{url}/count").json()
        assert body["pool_opened"] <= 5
        assert proc.alive()
    finally:
        pg.destroy()
