"""Keeps the load-test harness (tests/loadtest) from rotting: every scenario at tiny size, as a real
`python -m tests.loadtest` run against real processes, and the client's failure accounting against a real
HTTP server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from shared.config import REPO_ROOT
from tests.loadtest.client import call, new_client
from tests.loadtest.model import RequestSpec

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_tiny_run_of_every_scenario_writes_results_summary_and_charts(start_function, tmp_path: Path) -> None:
    """Scenarios 1, 2 and 4 at tiny size against the floor and the sample service (a real service on the
    shared startup manager and a real database): zero failed requests, figures as ratios to the floor.
    Scenario 6 of the cold-start list: in the cold stack the database comes up late and a client honouring
    Retry-After ends with no failed request. The
    storm against the WebSocket floor; remote mode against a local process standing in for a deployed URL."""
    _, deployed_empty = start_function("tests/bench/empty_function/main.py", "empty", wait_path="/")
    out = tmp_path / "results"
    forced = tmp_path / "forced.txt"  # what the force-cold command was run for, once per cold measurement
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.loadtest",
            "--size",
            "tiny",
            "--targets",
            "sample",
            "--out",
            str(out),
            "--remote-empty-url",
            deployed_empty,
            "--remote-force-cold",
            f"echo {{service}} >> {forced}",
            "--remote-samples",
            "2",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    summary = (out / "summary.md").read_text() if (out / "summary.md").exists() else "(no summary)"
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}\n{summary}"

    document = json.loads((out / "results.json").read_text())
    scenarios = {s["number"]: s for s in document["scenarios"]}
    assert sorted(scenarios) == [1, 2, 3, 4, 5]
    figures = json.loads((out / "figures.json").read_text())  # the small copy kept in docs/performance/
    assert [s["summary"] for s in figures["scenarios"]] == [s["summary"] for s in document["scenarios"]]
    assert all("raw" not in s for s in figures["scenarios"])

    s1 = scenarios[1]
    assert s1["status"] == "ok" and s1["failures"] == [], (s1["reason"], s1["failures"], s1["notes"])
    rows = {r["target"]: r for r in s1["summary"]["rows"]}
    assert set(rows) == {"empty", "sample"}, document["unavailable"]
    assert rows["empty"]["ratio_to_floor"] == 1.0
    assert rows["sample"]["ratio_to_floor"] == round(
        rows["sample"]["spawn_to_first_ok_ms"] / rows["empty"]["spawn_to_first_ok_ms"], 2
    )
    assert rows["sample"]["burst_ok"] == rows["sample"]["burst_requests"] == 5, rows["sample"]
    for batch in s1["raw"]["batches"]:
        for inst in batch["instances"]:
            assert inst["error"] is None
            assert inst["t_spawn"] < inst["t_port"] <= inst["t_first_ok"], inst

    s2 = scenarios[2]
    assert s2["status"] == "ok", s2["failures"]
    marks = [m["name"] for m in s2["raw"]["marks"]]
    assert "database accepts connections" in marks and "sample ready" in marks
    sample = next(r for r in s2["summary"]["rows"] if r["target"] == "sample")
    assert sample["failed"] == 0 and sample["first_ok_s"] >= s2["summary"]["db_up_s"], sample

    floor = next(r for r in scenarios[3]["summary"]["rows"] if r["target"] == "empty-ws")
    assert floor["served"] == floor["clients"] == 40 and floor["failed"] == 0, floor

    assert scenarios[4]["status"] == "ok", (scenarios[4]["reason"], scenarios[4]["failures"])
    assert {r["target"] for r in scenarios[4]["summary"]["rows"]} == {"empty", "sample"}

    s5 = scenarios[5]
    assert s5["status"] == "ok" and s5["summary"]["rows"][0]["cold_measurements"] == 2, (s5["reason"], s5["failures"])
    assert any("not verified here" in n for n in s5["notes"])
    assert forced.read_text().split() == ["empty", "empty"]

    charts = document["charts"]
    assert {
        "s1_timeline_k1.png",
        "cold_start_ratio.png",
        "cold_vs_warm.png",
        "s2_cold_stack.png",
        "s3_storm.png",
    } <= set(charts)
    for chart in charts:
        assert (out / "charts" / chart).read_bytes()[:8] == PNG_MAGIC
    for heading in ("## Targets", "## Scenario 1", "## Scenario 2", "## Scenario 3", "## Scenario 4", "## Scenario 5"):
        assert heading in summary


class _Flaky(BaseHTTPRequestHandler):
    """/late answers 503 + Retry-After once, then 200; /broken answers 500; /busy 503 without Retry-After."""

    late_calls = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/late":
            type(self).late_calls += 1
            if type(self).late_calls == 1:
                self._send(
                    503, {"error": {"code": "database_unavailable", "message": "starting"}}, {"Retry-After": "1"}
                )
            else:
                self._send(200, {"ok": True})
        elif self.path == "/busy":
            self._send(503, {"error": {"code": "busy", "message": "no"}})
        else:
            self._send(500, {"error": {"code": "internal", "message": "boom"}})

    def _send(self, status: int, body: dict[str, object], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_client_honours_retry_after_and_reports_each_failure_with_its_cause() -> None:
    """Scenario 6's client side: a 503 with Retry-After is waited out and counts as a success; a 500, a 503
    without Retry-After and a refused connection are failures whose cause names what happened."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    async def scenario() -> list:
        epoch = time.monotonic()
        async with new_client(4) as client:
            return [
                await call(
                    client,
                    url,
                    RequestSpec(name, "GET", path),
                    target="t",
                    instance=0,
                    epoch=epoch,
                    give_up_at=epoch + 10,
                )
                for name, url, path in (
                    ("late", base, "/late"),
                    ("broken", base, "/broken"),
                    ("busy", base, "/busy"),
                    ("refused", "http://127.0.0.1:9", "/"),
                )
            ]

    try:
        late, broken, busy, refused = asyncio.run(scenario())
    finally:
        server.shutdown()
    assert late.ok and late.attempts == 2 and late.status == 200 and late.latency_ms >= 1000
    assert late.first_attempt_ms < 1000
    assert not broken.ok and broken.cause == "HTTP 500 internal: boom"
    assert not busy.ok and busy.cause == "HTTP 503 busy: no (no usable Retry-After)"
    assert not refused.ok and refused.status is None and refused.cause.startswith("ConnectError")
