"""Scenario 13 on real processes: the agent API's optional dependency (the event log in Firestore, read only by
GET /api/runs/{id}/events) is down when the API starts. The API is ready but degraded and says so in
/health/startup; the core path (post a message, the run completes, its status is read) still works; the event
log route answers 503 with Retry-After; when Firestore comes back the API recovers without a restart.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.agent.harness import wait_until
from tests.agent.tcpproxy import TcpProxy


def test_scenario_13_event_log_down_api_ready_degraded_core_path_works(
    env_factory: Any,
    firestore_emulator_host: str,
) -> None:
    host, port = firestore_emulator_host.split(":")
    proxy = TcpProxy(host, int(port)).start()
    proxy.stop()  # the port is known and refuses connections: Firestore is down for the API only
    try:
        env = env_factory(api_env={"FIRESTORE_EMULATOR_HOST": proxy.address})
        api = env.stack.api_url

        def startup() -> dict[str, Any]:
            return httpx.get(f"{api}/health/startup", timeout=10).json()

        ready = httpx.get(f"{api}/health/ready", timeout=10)
        assert ready.status_code == 200 and ready.json()["degraded"] is True, ready.text
        firestore = wait_until(
            lambda: (c := startup()["components"]["firestore"])["attempts"] >= 1 and c, 30, "a first Firestore attempt"
        )
        assert firestore["status"] != "up" and firestore["priority"] == "medium", firestore
        assert startup()["status"] == "degraded"

        token = env.login()
        with env.stack.client(token) as client:
            posted = client.post("/api/agent/message", json={"content": "Where does my LLM spend go?"})
            assert posted.status_code == 202, posted.text
            run_id = posted.json()["run_id"]
            finished = env.stack.wait_run(token, run_id)
            assert finished["status"] == "completed", finished

            events = client.get(f"/api/runs/{run_id}/events")
            assert events.status_code == 503, events.text
            assert events.json()["error"]["code"] == "firestore_unavailable"
            assert int(events.headers["Retry-After"]) >= 1

            proxy.start()  # Firestore is back on the same address
            wait_until(lambda: startup()["status"] == "ready", 60, "the API to leave degraded mode")
            replay = client.get(f"/api/runs/{run_id}/events")
            assert replay.status_code == 200, replay.text
            seqs = [e["seq"] for e in replay.json()["events"]]
            assert seqs == list(range(1, len(seqs) + 1)) and replay.json()["events"][-1]["type"] == "agent_completed"
    finally:
        proxy.stop()
