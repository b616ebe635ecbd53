"""Faults around the agent API, each on a stack of its own: Pub/Sub down at post time, runs that no worker
executes (cancel while queued, the stale-run safety net), a cold start under a burst, a database that comes up
after the service.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlparse

import httpx

from tests.agent.conftest import Sql
from tests.agent.harness import wait_until
from tests.agent.tcpproxy import TcpProxy


def _counts(sql: Sql, user_id: str) -> tuple[int, int, int]:
    row = sql.one(
        """SELECT (SELECT count(*) FROM threads WHERE user_id = %s) AS t,
                            (SELECT count(*) FROM messages WHERE user_id = %s) AS m,
                            (SELECT count(*) FROM runs WHERE user_id = %s) AS r""",
        (user_id, user_id, user_id),
    )
    return row["t"], row["m"], row["r"]


def test_pubsub_down_at_post_time_answers_503_and_stores_nothing(
    env_factory: Any, sql: Sql, agent_pubsub_host: str
) -> None:
    """Pub/Sub unreachable when a message is posted: a clear 503 with Retry-After, no thread, message or run
    left behind; once Pub/Sub is back the same client_message_id goes through exactly once."""
    host, port = agent_pubsub_host.split(":")
    proxy = TcpProxy(host, int(port)).start()
    try:
        env = env_factory(api_env={"PUBSUB_EMULATOR_HOST": proxy.address, "PUBLISH_TIMEOUT_S": "1.5"})
        token = env.login()
        user = env.user_id(token)
        with env.stack.client(token) as client:
            warm = client.post("/api/agent/message", json={"content": "warm-up"})
            assert warm.status_code == 202
            env.stack.wait_run(token, warm.json()["run_id"])
            before = _counts(sql, user)
            proxy.stop()
            for attempt in range(4):  # the breaker opens on the way: later answers come at once
                started = time.monotonic()
                down = client.post("/api/agent/message", json={"content": "while down", "client_message_id": "k1"})
                assert down.status_code == 503, down.text
                assert down.json()["error"]["code"] == "pubsub_unavailable"
                assert int(down.headers["Retry-After"]) >= 1
                assert "nothing was stored" in down.json()["error"]["message"]
                print(f"attempt {attempt}: 503 after {time.monotonic() - started:.2f}s")
            assert _counts(sql, user) == before  # nothing half-written

            proxy.start()

            def through() -> dict[str, Any] | None:
                response = client.post("/api/agent/message", json={"content": "while down", "client_message_id": "k1"})
                return response.json() if response.status_code == 202 else None

            posted = wait_until(through, 60, "the post to succeed once Pub/Sub is back", 1.0)
            run = env.stack.wait_run(token, posted["run_id"])
            assert run["status"] == "completed"
            assert sql.one("SELECT count(*) AS n FROM messages WHERE client_message_id = 'k1'")["n"] == 1
            assert _counts(sql, user) == (before[0] + 1, before[1] + 2, before[2] + 1)
    finally:
        proxy.stop()


def test_runs_no_worker_executes_still_end(env_factory: Any, sql: Sql) -> None:
    """A queued run, or one whose worker stopped heart-beating, cancelled through the API gets its run_cancelled
    event from the API; a run nobody executes is failed once past its budget, so pollers and streams always end."""
    env = env_factory(api_env={"RUN_TIME_BUDGET_S": "1", "RUN_LEASE_S": "2"}, push=False)
    token = env.login()
    with env.stack.client(token) as client:
        queued = client.post("/api/agent/message", json={"content": "cancel me"}).json()
        cancelled = client.post(f"/api/runs/{queued['run_id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        events = client.get(f"/api/runs/{queued['run_id']}/events").json()["events"]
        assert [(e["seq"], e["type"]) for e in events] == [(1, "run_cancelled")]
        assert [e.type for e in env.stack.wait_tapped_terminal(queued["run_id"])] == ["run_cancelled"]

        orphan = client.post("/api/agent/message", json={"content": "my worker died"}).json()
        sql.all(
            "UPDATE runs SET status = 'running', attempt = 1, claimed_at = now() - interval '1 minute' WHERE id = %s",
            (orphan["run_id"],),
        )
        cancelled = client.post(f"/api/runs/{orphan['run_id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert env.stack.wait_tapped_terminal(orphan["run_id"])[-1].type == "run_cancelled"

        stale = client.post("/api/agent/message", json={"content": "nobody runs me"}).json()
        assert client.get(f"/api/runs/{stale['run_id']}").json()["status"] == "queued"
        time.sleep(3.2)  # budget (1 s) + grace (2 s) with no heartbeat
        run = client.get(f"/api/runs/{stale['run_id']}").json()
        assert run["status"] == "failed" and run["error"]["code"] == "run_timed_out"
        events = client.get(f"/api/runs/{stale['run_id']}/events").json()["events"]
        assert [e["type"] for e in events] == ["agent_error"] and events[0]["data"]["code"] == "run_timed_out"


def test_cold_api_first_requests_burst(env_factory: Any, sql: Sql) -> None:
    """Scenario 23 and Scenario 2: a token issued by auth is accepted on the first requests of a cold agent API,
    and a burst of first requests shares one bounded connection pool."""
    env = env_factory(start_api=False)
    token = env.login()
    env.stack.start_api(wait_ready=False, DB_POOL_SIZE="3")  # only /health/live answered so far
    results: list[int] = []

    def first_request() -> None:
        with env.stack.client(token) as client:
            results.append(client.get("/api/threads").status_code)

    burst = [threading.Thread(target=first_request) for _ in range(16)]
    for t in burst:
        t.start()
    for t in burst:
        t.join()
    assert results == [200] * 16
    connections = sql.one("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'agent-api'")["n"]
    assert 1 <= connections <= 3


def test_database_up_after_the_service(env_factory: Any, migrated_db_url: str) -> None:
    """Scenario 6: the database comes up seconds after the agent API: requests meanwhile get 503 with
    Retry-After (never a 500), then the API serves without a restart."""
    target = urlparse(migrated_db_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    proxy.stop()  # the port is reserved and refuses connections: the database is "down"
    proxied = migrated_db_url.replace(f":{target.port}/", f":{proxy.port}/")
    env = env_factory(start_api=False)
    token = env.login()
    env.stack.start_api(wait_ready=False, DATABASE_URL=proxied, STARTUP_WAIT_SECONDS="1")
    statuses: list[int] = []
    with env.stack.client(token) as client:
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            response = client.get("/api/threads")
            statuses.append(response.status_code)
            assert response.status_code == 503, response.text
            assert int(response.headers["Retry-After"]) >= 1
        assert httpx.get(env.stack.api_url + "/health/ready").status_code == 503
        proxy.start()
        try:
            ok = wait_until(lambda: client.get("/api/threads").status_code == 200, 45, "the API to serve")
            assert ok and 500 not in statuses
        finally:
            proxy.stop()


def test_end_to_end_with_the_configured_pipeline(env_factory: Any) -> None:
    """AGENT_PIPELINE=auto: the optimization pipeline when it is installed, else the minimal one; either way the
    platform's guarantees hold (gapless log equal to the published stream, one terminal event, one answer)."""
    env = env_factory(worker_env={"AGENT_PIPELINE": "auto"})
    token = env.login()
    with env.stack.client(token) as client:
        posted = client.post("/api/agent/message", json={"content": "Where can I cut my LLM spend?"}).json()
        tapped = env.stack.wait_tapped_terminal(posted["run_id"], 120)
        run = env.stack.wait_run(token, posted["run_id"], timeout_s=120)
        logged = env.stack.log_events(posted["run_id"])
        assert [(e.seq, e.type) for e in tapped] == [(e.seq, e.type) for e in logged]
        assert [e.seq for e in logged] == list(range(1, len(logged) + 1))
        assert run["status"] == "completed", run
        assert logged[0].data["pipeline"].endswith(":run")
        assert [e.terminal for e in logged].count(True) == 1 and logged[-1].type == "agent_completed"
        messages = client.get(f"/api/threads/{posted['thread_id']}/messages").json()["items"]
        assert [m["role"] for m in messages] == ["user", "assistant"] and messages[1]["content"].strip()
