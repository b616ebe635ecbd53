"""The rollup job (`python -m functions.agent.rollup_job`, a real process) precomputes the analyses; the tools
serve them while the user's data version holds and recompute once an upload or a delete changes it."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from functions.agent.intelligence.toolbox import FULL_ANALYSIS, Toolbox
from functions.agent.usage import store
from shared.config import REPO_ROOT
from tests.intelligence import datasets
from tests.intelligence.conftest import make_user


def job(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "NETRA_ENV": "test",
        "NETRA_DOTENV": "/nonexistent/.env",
        "LOG_FORMAT": "text",
        "DATABASE_URL": db_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "functions.agent.rollup_job", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_job_writes_rollups_that_tools_serve_until_the_data_changes(intel_db: Any, shared_db_url: str) -> None:
    user = make_user(intel_db)
    datasets.load(intel_db, user, datasets.dataset_a())
    done = job(shared_db_url, "--user", user)
    assert done.returncode == 0, done.stderr
    assert f"user {user}: 41 records" in done.stdout
    stored = intel_db.all("SELECT tool, args_key, data_version FROM usage_rollups WHERE user_id = %s", [user])
    assert len(stored) == len(FULL_ANALYSIS) and {r["data_version"] for r in stored} == {1}

    live = Toolbox(intel_db, user, use_rollups=False)
    cached = Toolbox(intel_db, user)
    for name, args in FULL_ANALYSIS:
        assert cached.call(name, args) == live.call(name, args), name
    assert cached.rollup_hits == len(FULL_ANALYSIS)

    # New data: the version moves on, the rollups are ignored, the tools see the new rows.
    datasets.load(intel_db, user, [datasets.row("late-1", "2025-03-02T18:00:00Z", "gpt-4o", 400_000, 0)])
    fresh = Toolbox(intel_db, user)
    assert fresh.call("usage_overview")["records"] == 42 and fresh.rollup_hits == 0
    assert fresh.call("usage_overview")["total_cost_usd"] == 9.65  # + 400,000 x 2.50 / 1e6 = 1.00


def test_job_without_arguments_picks_the_users_with_stale_rollups(intel_db: Any, shared_db_url: str) -> None:
    first, second = make_user(intel_db), make_user(intel_db)
    datasets.load(intel_db, first, datasets.dataset_b())
    datasets.load(intel_db, second, datasets.dataset_b())
    assert job(shared_db_url).returncode == 0
    picked = job(shared_db_url)
    assert picked.returncode == 0 and first not in picked.stdout and second not in picked.stdout
    store.delete(intel_db, second)  # deleting bumps the version and drops the rollups
    again = job(shared_db_url)
    assert f"user {second}: 0 records" in again.stdout and first not in again.stdout


def test_job_reports_configuration_errors() -> None:
    bad = job("mysql://nope")
    assert bad.returncode == 2 and "DATABASE_URL" in bad.stderr


def test_live_ingested_appends_keep_a_young_rollup_served_uploads_do_not(intel_db: Any) -> None:
    """Issue 19: while records stream in (store.bump_version(live=True)), a rollup at most
    LIVE_ROLLUP_MAX_AGE_S old is still served; an upload (or one older than that) is never served across."""
    from functions.agent.intelligence.toolbox import LIVE_ROLLUP_MAX_AGE_S
    from functions.agent.rollup_job import refresh_user
    from functions.agent.usage.schema import build_row

    user = make_user(intel_db)
    datasets.load(intel_db, user, datasets.dataset_a())
    assert refresh_user(intel_db, user, at_least=1) is not None
    assert refresh_user(intel_db, user, at_least=1) is None  # already covered: no second computation

    streamed = build_row(datasets.row("live-1", "2025-03-02T18:00:00Z", "gpt-4o", 1000, 10))
    with intel_db.transaction() as tx:
        assert store.insert_records(tx, user, None, [streamed]) == 1
        store.bump_version(tx, user, live=True)
    young = Toolbox(intel_db, user)
    assert young.call("usage_overview")["records"] == 41 and young.rollup_hits == 1  # served, a minute behind

    intel_db.execute(
        "UPDATE usage_rollups SET computed_at = now() - %s * interval '1 second' WHERE user_id = %s",
        [LIVE_ROLLUP_MAX_AGE_S + 1, user],
    )
    old = Toolbox(intel_db, user)
    assert old.call("usage_overview")["records"] == 42 and old.rollup_hits == 0  # too old: computed live

    assert refresh_user(intel_db, user, at_least=2) is not None
    datasets.load(intel_db, user, [datasets.row("upload-1", "2025-03-02T19:00:00Z", "gpt-4o", 1000, 10)])
    uploaded = Toolbox(intel_db, user)
    assert uploaded.call("usage_overview")["records"] == 43 and uploaded.rollup_hits == 0  # an upload: never
