"""Plans and their limits (docs/AUTH.md, Plans) against real processes: auth, the agent API and worker on a
real PostgreSQL, Pub/Sub and Firestore emulators; the operator command as a subprocess.

The worker's push subscription is removed, so posted runs stay queued (the concurrent-runs limit counts them).
Limits are tight here: free 4 runs a minute and 10 usage rows; early 3 concurrent runs; mid a 0.50 USD cap.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.config import REPO_ROOT
from tests.agent.conftest import ApiEnv, Sql, start_api_env, stop_api_env


def _plan(rpm: int, concurrent: int, rows: int | None, spend: float | None) -> str:
    return json.dumps(
        {"runs_per_minute": rpm, "concurrent_runs": concurrent, "usage_rows": rows, "monthly_spend_usd": spend}
    )


PLAN_ENV = {
    "PLAN_FREE": _plan(4, 1000, 10, None),
    "PLAN_EARLY": _plan(1000, 3, None, None),
    "PLAN_MID": _plan(1000, 1000, None, 0.5),
    "PLAN_CONCURRENCY_RETRY_AFTER_S": "7",
    # As many transactions at once as the tests send requests: a check that is not serialized would overshoot.
    "DB_POOL_SIZE": "16",
    # Requests held behind the test's lock wait for it, however slowly a loaded machine brings them there.
    "PLAN_LOCK_WAIT_MS": "40000",
    "DB_STATEMENT_TIMEOUT_MS": "60000",
}


@pytest.fixture(scope="module")
def plans_env(
    module_db_url: str, agent_pubsub_host: str, firestore_emulator_host: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiEnv]:
    env = start_api_env(
        module_db_url, agent_pubsub_host, firestore_emulator_host, tmp_path_factory.mktemp("plans"), {}, PLAN_ENV
    )
    # No worker deliveries: every accepted run stays queued, an unfinished run for the concurrency limit.
    env.stack.subscriber().delete_subscription(
        request={"subscription": f"projects/{env.stack.project}/subscriptions/agent-worker"}
    )
    yield env
    stop_api_env(env)


@pytest.fixture(scope="module")
def db(module_db_url: str) -> Iterator[Sql]:
    sql = Sql(module_db_url)
    yield sql
    sql.close()


def post(env: ApiEnv, token: str, content: str = "Where does my GPT-4o spend go?") -> httpx.Response:
    return httpx.post(
        f"{env.stack.api_url}/api/agent/message",
        json={"content": content, "client_message_id": uuid.uuid4().hex},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def at_once(n: int, call: Any) -> list[httpx.Response]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: call(), range(n)))


def fresh_window(margin_s: float = 8.0) -> None:
    """Start in a fixed one-minute window with ``margin_s`` left: the counts must not straddle two windows."""
    left = 60 - time.time() % 60
    if left < margin_s:
        time.sleep(left + 0.2)


def all_at_once_behind_the_user_lock(db: Sql, db_url: str, user_id: str, n: int, call: Any) -> list[httpx.Response]:
    """``n`` requests that all reach the database while this test holds the user's row (FOR UPDATE), then
    released together. A check serialized by the row lock waits before counting; one that is not counts
    first, then waits at its insert's foreign key to the user, so all of them count the same and overshoot."""
    holder = Sql(db_url)
    holder.all("BEGIN")
    holder.one("SELECT id FROM users WHERE id = %s FOR UPDATE", (user_id,))
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(call) for _ in range(n)]
        try:
            waiting, deadline = 0, time.monotonic() + 30  # within PLAN_LOCK_WAIT_MS
            while time.monotonic() < deadline and waiting < n and not any(f.done() for f in futures):
                waiting = db.one(
                    "SELECT count(*) AS n FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )["n"]
                time.sleep(0.05)
            assert not any(f.done() for f in futures), [f.result().text for f in futures if f.done()]
            assert waiting >= n, f"only {waiting} of {n} requests reached the lock"
        finally:
            holder.all("COMMIT")
            holder.close()
        return [f.result() for f in futures]


def admin(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"NETRA_ENV": "test", "NETRA_DOTENV": "/nonexistent/.env", "DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "functions.auth.admin", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def error(response: httpx.Response) -> dict[str, Any]:
    return response.json()["error"]


def test_runs_per_minute_refused_with_retry_after_and_per_user(plans_env: ApiEnv) -> None:
    fresh_window()
    alice, bob = plans_env.login(), plans_env.login()
    assert [post(plans_env, alice).status_code for _ in range(4)] == [202] * 4
    refused = post(plans_env, alice)
    assert refused.status_code == 429, refused.text
    body = error(refused)
    assert body["code"] == "runs_per_minute_limit"
    retry = int(refused.headers["Retry-After"])
    assert 1 <= retry <= 60 and body["details"]["retry_after_s"] == retry
    assert body["details"] == {"plan": "free", "limit": 4, "retry_after_s": retry}
    assert body["message"] == f"you have used your plan's 4 runs this minute; try again in {retry} s"
    # Another user of the same plan has a counter of their own.
    assert post(plans_env, bob).status_code == 202


def test_concurrent_posts_never_exceed_the_rate(plans_env: ApiEnv, db: Sql) -> None:
    """12 posts at once on the Firestore emulator's counter: exactly the plan's 4 get through."""
    fresh_window()
    token = plans_env.login()
    answers = at_once(12, lambda: post(plans_env, token))
    codes = sorted(r.status_code for r in answers)
    assert codes == [202] * 4 + [429] * 8, [r.text for r in answers if r.status_code not in (202, 429)]
    assert {error(r)["code"] for r in answers if r.status_code == 429} == {"runs_per_minute_limit"}
    stored = db.one("SELECT count(*) AS n FROM runs WHERE user_id = %s", (plans_env.user_id(token),))["n"]
    assert stored == 4, "a refused post stores nothing"


def test_admin_sets_the_plan_and_auth_shows_it(plans_env: ApiEnv, module_db_url: str) -> None:
    email = f"plan-{uuid.uuid4().hex[:8]}@example.com"
    before = plans_env.auth.login(email)
    auth = plans_env.auth.url
    headers = {"Authorization": f"Bearer {before['access_token']}"}
    assert before["user"]["plan"] == "free"
    assert httpx.get(f"{auth}/auth/me", headers=headers).json()["plan"] == "free"

    done = admin(module_db_url, "set-plan", email.upper(), "early")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{email.upper()}: plan early (was free)"
    assert httpx.get(f"{auth}/auth/me", headers=headers).json()["plan"] == "early", "the stored plan, at once"
    # The token's claim is the plan when it was issued; a new token (sign-in or refresh) carries the new one.
    old = httpx.post(f"{auth}/auth/validate", json={"token": before["access_token"]}).json()
    assert old["valid"] and old["plan"] == "free"
    refreshed = httpx.post(f"{auth}/auth/refresh", json={"refresh_token": before["refresh_token"]}).json()
    assert refreshed["user"]["plan"] == "early"
    assert httpx.post(f"{auth}/auth/validate", json={"token": refreshed["access_token"]}).json()["plan"] == "early"

    unknown = admin(module_db_url, "set-plan", "nobody@example.com", "mid")
    assert unknown.returncode == 1 and "no user with email 'nobody@example.com'" in unknown.stderr
    bad_plan = admin(module_db_url, "set-plan", email, "platinum")
    assert bad_plan.returncode == 2 and "invalid choice: 'platinum'" in bad_plan.stderr
    shown = admin(module_db_url, "show", email)
    assert shown.returncode == 0 and "plan=early" in shown.stdout


def test_concurrent_runs_limit_holds_under_concurrent_posts(plans_env: ApiEnv, db: Sql, module_db_url: str) -> None:
    email = f"busy-{uuid.uuid4().hex[:8]}@example.com"
    token = plans_env.login(email)
    assert admin(module_db_url, "set-plan", email, "early").returncode == 0
    answers = all_at_once_behind_the_user_lock(
        db, module_db_url, plans_env.user_id(token), 16, lambda: post(plans_env, token)
    )
    accepted = [r for r in answers if r.status_code == 202]
    refused = [r for r in answers if r.status_code != 202]
    assert len(accepted) == 3, [r.text for r in answers]
    assert {r.status_code for r in refused} == {429}
    body = error(refused[0])
    assert body["code"] == "concurrent_runs_limit" and refused[0].headers["Retry-After"] == "7"
    assert body["details"]["limit"] == 3 and body["details"]["active"] == 3 and body["details"]["plan"] == "early"
    # A finished run frees its slot.
    db.one("UPDATE runs SET status = 'completed' WHERE id = %s RETURNING id", (accepted[0].json()["run_id"],))
    assert post(plans_env, token).status_code == 202
    assert post(plans_env, token).status_code == 429


def test_monthly_spend_cap_from_the_cost_ledger(plans_env: ApiEnv, db: Sql, module_db_url: str) -> None:
    email = f"spender-{uuid.uuid4().hex[:8]}@example.com"
    token = plans_env.login(email)
    user_id = plans_env.user_id(token)
    assert admin(module_db_url, "set-plan", email, "mid").returncode == 0  # cap 0.50 USD here
    month = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)

    def spend(usd: float, at: datetime) -> None:
        db.one(
            "INSERT INTO cost_ledger (user_id, provider, model, cost_usd, created_at) "
            "VALUES (%s, 'mock', 'mock-pro', %s, %s) RETURNING id",
            (user_id, usd, at),
        )

    spend(10.0, month - timedelta(days=3))  # last month's spend does not count
    spend(0.3, month + timedelta(seconds=1))
    assert post(plans_env, token).status_code == 202
    spend(0.2, datetime.now(UTC))  # 0.50 reached
    refused = post(plans_env, token)
    assert refused.status_code == 402, refused.text
    body = error(refused)
    assert body["code"] == "monthly_spend_cap"
    assert body["details"]["limit_usd"] == 0.5 and body["details"]["spent_usd"] == pytest.approx(0.5)
    assert body["details"]["resets_at"].startswith(
        (month.replace(year=month.year + 1, month=1) if month.month == 12 else month.replace(month=month.month + 1))
        .date()
        .isoformat()
    )
    assert "Retry-After" not in refused.headers
    assert admin(module_db_url, "set-plan", email, "enterprise").returncode == 0  # no cap: at once
    assert post(plans_env, token).status_code == 202


def rows(n: int, tag: str) -> bytes:
    lines = [
        {
            "request_id": f"{tag}-{i}",
            "timestamp": "2026-11-02T10:00:00Z",
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": 100,
            "output_tokens": 10,
        }
        for i in range(n)
    ]
    return "\n".join(json.dumps(line) for line in lines).encode()


def upload(env: ApiEnv, token: str, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{env.stack.api_url}/api/usage",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
        timeout=30,
    )


def stored_rows(db: Sql, user_id: str) -> int:
    return int(db.one("SELECT count(*) AS n FROM usage_records WHERE user_id = %s", (user_id,))["n"])


def test_usage_rows_limit(plans_env: ApiEnv, db: Sql) -> None:
    token = plans_env.login()
    user_id = plans_env.user_id(token)
    assert upload(plans_env, token, rows(8, "a")).status_code == 201
    refused = upload(plans_env, token, rows(3, "b"))
    assert refused.status_code == 403, refused.text
    body = error(refused)
    assert body["code"] == "usage_rows_limit"
    assert body["details"] == {"plan": "free", "limit": 10, "stored_after": 11, "rows_received": 3}
    assert stored_rows(db, user_id) == 8, "nothing of the refused upload is stored"
    assert upload(plans_env, token, rows(2, "b")).status_code == 201
    assert upload(plans_env, token, rows(8, "a")).status_code == 200, "duplicates add no rows: not refused"
    assert stored_rows(db, user_id) == 10


def test_concurrent_uploads_never_exceed_the_rows_limit(plans_env: ApiEnv, db: Sql, module_db_url: str) -> None:
    token = plans_env.login()
    tags = iter(range(100))
    answers = all_at_once_behind_the_user_lock(
        db, module_db_url, plans_env.user_id(token), 10, lambda: upload(plans_env, token, rows(4, f"p{next(tags)}"))
    )
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] * 2 + [403] * 8, [r.text for r in answers]
    assert stored_rows(db, plans_env.user_id(token)) == 8
