"""Agent platform benchmarks (`python -m tests.bench.bench_agent`, or `make bench`). Prints figures only.

1. POST /api/agent/message latency, p50/p99, on a warm API (each run is queued on the real Pub/Sub emulator).
2. Time from POST to the run's first event on ``agent-events`` with the mock provider, p50/p99 (a streaming
   pull subscriber, as ws_bridge has): API -> Postgres -> Pub/Sub push -> worker claim -> Firestore log ->
   Pub/Sub publish -> subscriber. Its same-run baseline: the emulator's own hop, a message published to a topic
   of the bench and read by an ordered streaming pull (the last hop of the path above, and a floor for it).
3. Cold start of the agent API, spawn to first successful POST (202), as a ratio to the empty
   functions-framework function (tests/bench/empty_function/main.py, target ``empty``) measured in the same run.

Everything runs locally: embedded PostgreSQL, the Pub/Sub and Firestore emulators (as NETRA_EMULATORS
chooses), the auth function (tokens), the agent worker and API as functions-framework processes.
BENCH_AGENT_N scales the sample sizes.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
import uuid
from typing import Any

import httpx

from emulators.postgres import free_port
from emulators.process import functions_framework_argv
from shared.config import REPO_ROOT
from shared.models.events import AgentEvent
from shared.pubsub_topology import AGENT_EVENTS, subscription_path, topic_path
from tests.agent.harness import AgentStack
from tests.bench.agent_stack import bench_agent_stack
from tests.bench.spawn import EMPTY_FUNCTION, ColdStart, empty_ok, phases_line, spawn_phases

N = int(os.environ.get("BENCH_AGENT_N", "1"))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summary(name: str, values_ms: list[float]) -> str:
    return (
        f"{name}: n={len(values_ms)} p50={pct(values_ms, 50):.1f} ms p99={pct(values_ms, 99):.1f} ms "
        f"mean={statistics.fmean(values_ms):.1f} ms max={max(values_ms):.1f} ms"
    )


class FirstEvents:
    """A streaming pull on the tap subscription: when each run's events arrive."""

    def __init__(self, stack: AgentStack) -> None:
        self.first: dict[str, float] = {}
        self.terminal: dict[str, float] = {}
        self.cond = threading.Condition()
        # A subscription of its own, created now: it holds no backlog of earlier runs' events (one thread means
        # one ordering key, so a backlog would be delivered one message at a time before ours).
        name = subscription_path(stack.project, f"bench-{uuid.uuid4().hex[:8]}")
        stack.subscriber().create_subscription(
            request={"name": name, "topic": topic_path(stack.project, AGENT_EVENTS), "enable_message_ordering": True}
        )
        self.future = stack.subscriber().subscribe(name, self._on_message)

    def _on_message(self, message: Any) -> None:
        now = time.perf_counter()
        event = AgentEvent.from_bytes(message.data)
        message.ack()
        with self.cond:
            if event.seq == 1:
                self.first.setdefault(event.run_id, now)
            if event.terminal:
                self.terminal.setdefault(event.run_id, now)
            self.cond.notify_all()

    def wait(self, run_id: str, terminal: bool, timeout_s: float = 30.0) -> float:
        table = self.terminal if terminal else self.first
        with self.cond:
            if not self.cond.wait_for(lambda: run_id in table, timeout_s):
                raise TimeoutError(f"no {'terminal' if terminal else 'first'} event for run {run_id}")
            return table[run_id]

    def close(self) -> None:
        self.future.cancel()


def bench_pubsub_hop(stack: AgentStack, n: int) -> list[float]:
    """Publish -> ordered streaming-pull arrival on the same emulator, one message at a time (ms)."""
    from google.cloud import pubsub_v1

    topic = topic_path(stack.project, f"bench-hop-{uuid.uuid4().hex[:8]}")
    stack.publisher().create_topic(name=topic)
    # One-message batches with ordering on, as the API and the worker publish.
    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=1, max_latency=0.001),
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
    )
    name = subscription_path(stack.project, f"bench-hop-{uuid.uuid4().hex[:8]}")
    stack.subscriber().create_subscription(request={"name": name, "topic": topic, "enable_message_ordering": True})
    arrived: dict[str, float] = {}
    cond = threading.Condition()

    def on_message(message: Any) -> None:
        now = time.perf_counter()
        message.ack()
        with cond:
            arrived.setdefault(message.data.decode(), now)
            cond.notify_all()

    future = stack.subscriber().subscribe(name, on_message)
    samples = []
    try:
        for i in range(n + 3):  # the first three warm the stream up and are not counted
            key = str(i)
            started = time.perf_counter()
            publisher.publish(topic, key.encode(), ordering_key="bench").result(timeout=30)
            with cond:
                if not cond.wait_for(lambda key=key: key in arrived, 30):
                    raise TimeoutError("the probe message did not arrive")
            if i >= 3:
                samples.append((arrived[key] - started) * 1000)
            time.sleep(0.05)
    finally:
        future.cancel()
    return samples


def bench_post_latency(stack: AgentStack, token: str, thread_id: str, n: int) -> list[float]:
    # Each run is tiny (mock, no delay); pace posts so the worker's concurrency bound does not push back.
    samples = []
    with stack.client(token) as client:
        for i in range(n):
            started = time.perf_counter()
            response = client.post(
                "/api/agent/message", json={"content": f"latency sample {i}", "thread_id": thread_id}
            )
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 202, response.text
            time.sleep(0.05)
    return samples


def bench_first_event(stack: AgentStack, token: str, thread_id: str, n: int) -> tuple[list[float], list[float]]:
    watcher = FirstEvents(stack)
    first, whole = [], []
    try:
        with stack.client(token) as client:
            for i in range(n):
                started = time.perf_counter()
                response = client.post(
                    "/api/agent/message", json={"content": f"first event sample {i}", "thread_id": thread_id}
                )
                run_id = response.json()["run_id"]
                first.append((watcher.wait(run_id, terminal=False) - started) * 1000)
                whole.append((watcher.wait(run_id, terminal=True) - started) * 1000)
    finally:
        watcher.close()
    return first, whole


def bench_cold_start(stack: AgentStack, token: str, thread_id: str, rounds: int) -> tuple[list[float], list[float]]:
    empty_runs: list[ColdStart] = []
    agent_runs: list[ColdStart] = []

    def post_ok(url: str) -> bool:
        response = httpx.post(
            url + "/api/agent/message",
            json={"content": "cold start", "thread_id": thread_id},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        return response.status_code == 202

    for _ in range(rounds):
        port = free_port()
        empty_runs.append(
            spawn_phases(functions_framework_argv(EMPTY_FUNCTION, "empty", port), {"NETRA_ENV": "test"}, port, empty_ok)
        )
        port = free_port()
        argv = functions_framework_argv(REPO_ROOT / "functions/agent/main.py", "agent_api", port)
        agent_runs.append(spawn_phases(argv, stack.env(), port, post_ok))
    print(phases_line("empty function", empty_runs), flush=True)
    print(phases_line("agent API", agent_runs), flush=True)
    return [r.first_success_s for r in empty_runs], [r.first_success_s for r in agent_runs]


def drain(db_url: str, timeout_s: float = 300.0) -> None:
    from tests.agent.conftest import Sql

    sql = Sql(db_url)
    try:
        deadline = time.monotonic() + timeout_s
        while sql.one("SELECT count(*) AS n FROM runs WHERE status IN ('queued', 'running')")["n"]:
            if time.monotonic() > deadline:
                raise TimeoutError("runs of the latency benchmark did not finish")
            time.sleep(0.2)
    finally:
        sql.close()


def main() -> None:
    with bench_agent_stack("bench-agent", MAX_CONCURRENT_RUNS="8") as bench:
        stack, url = bench.stack, bench.db_url
        token = bench.token("bench@example.com")
        with stack.client(token) as client:
            thread_id = client.post("/api/threads", json={"title": "bench"}).json()["id"]
            warm = client.post("/api/agent/message", json={"content": "warm", "thread_id": thread_id}).json()
            stack.wait_run(token, warm["run_id"])

        print(
            summary("POST /api/agent/message latency", bench_post_latency(stack, token, thread_id, 200 * N)), flush=True
        )
        drain(url)  # the first-event figure must not include waiting behind the latency benchmark's runs
        first, whole = bench_first_event(stack, token, thread_id, 50 * N)
        print(summary("POST -> first event on agent-events (mock provider)", first), flush=True)
        print(summary("POST -> terminal event on agent-events (mock provider, whole run)", whole), flush=True)
        hop = bench_pubsub_hop(stack, 50 * N)
        print(summary("baseline, same run: Pub/Sub publish -> ordered streaming-pull arrival", hop), flush=True)
        print(
            f"first event p50 / Pub/Sub hop p50: {pct(first, 50) / pct(hop, 50):.2f}x "
            f"(the path above holds two Pub/Sub hops, a push and a pull)",
            flush=True,
        )
        empty_s, agent_s = bench_cold_start(stack, token, thread_id, 5 * N)
        empty_med, agent_med = statistics.median(empty_s), statistics.median(agent_s)
        print(
            f"cold start, spawn -> first success: empty function median {empty_med * 1000:.0f} ms "
            f"({', '.join(f'{s * 1000:.0f}' for s in empty_s)}); agent API first POST 202 median "
            f"{agent_med * 1000:.0f} ms ({', '.join(f'{s * 1000:.0f}' for s in agent_s)}); "
            f"ratio {agent_med / empty_med:.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
