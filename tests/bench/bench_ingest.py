"""Live ingestion benchmarks (`BENCH=ingest python -m tests.bench`, or `make bench`). Prints figures only.

1. Spans per second into one agent API instance (a functions-framework process, as deployed): C concurrent
   clients POST OTLP protobuf batches of B GenAI spans to /v1/traces (B = 512, the OpenTelemetry SDK's default
   batch). Same-run baseline: the plain upload path, POST /api/usage with the same rows as JSONL in the same
   batches and concurrency (same database, same multi-row INSERT).
2. Export to visible: a span exported by the official OpenTelemetry SDK (OTLP/HTTP exporter, one export per
   span) until the analysis tools (Toolbox usage_overview, rollups included, as the chat reads them) count
   it, for an account that already holds the throughput phase's records and whose rollups the worker refreshes.
   Same-run baseline: one row uploaded with POST /api/usage until the same tool counts it.

Everything runs locally: embedded PostgreSQL, the Pub/Sub and Firestore emulators (as NETRA_EMULATORS
chooses), auth (tokens), the agent API and worker as functions-framework processes. BENCH_INGEST_N scales the
sample sizes.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from tests.bench.agent_stack import bench_agent_stack

N = int(os.environ.get("BENCH_INGEST_N", "1"))
BATCH = 512
CLIENTS = 4


def chat_attrs(i: int) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 1000 + i % 500,
        "gen_ai.usage.output_tokens": 100 + i % 50,
        "gen_ai.request.max_tokens": 800,
        "user.id": f"user-{i % 100}",
    }


def otlp_batch(size: int) -> bytes:
    from tests.ingest.otlp_payloads import request, span

    return request([span(chat_attrs(i)) for i in range(size)]).SerializeToString()


def jsonl_batch(size: int) -> bytes:
    rows = []
    for i in range(size):
        rows.append(
            {
                "request_id": uuid.uuid4().hex,
                "timestamp": "2025-11-24T16:00:00Z",
                "provider": "openai",
                "model": "gpt-4o-mini",
                "input_tokens": 1000 + i % 500,
                "output_tokens": 100 + i % 50,
                "latency_ms": 850,
                "max_tokens": 800,
                "feature": "support-bot",
                "end_user": f"user-{i % 100}",
            }
        )
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def throughput(url: str, headers: dict[str, str], bodies: list[bytes], clients: int) -> tuple[float, int]:
    """(seconds, requests refused) to send every body, ``clients`` at a time; refused requests are resent."""
    queue = list(bodies)
    lock = threading.Lock()
    refused = [0]

    def client() -> None:
        with httpx.Client(timeout=120, trust_env=False) as http:
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                while True:
                    response = http.post(url, content=body, headers=headers)
                    if response.status_code in (429, 503):
                        with lock:
                            refused[0] += 1
                        time.sleep(float(response.headers.get("Retry-After", "1")))
                        continue
                    assert response.status_code in (200, 201), response.text[:300]
                    break

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, refused[0]


def visible_after(send: Callable[[], None], records: Callable[[], int], before: int, timeout_s: float = 120) -> float:
    started = time.perf_counter()
    send()
    while records() <= before:
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError("the record did not become visible")
        time.sleep(0.05)
    return time.perf_counter() - started


def main() -> None:
    from functions.agent.intelligence.toolbox import Toolbox
    from shared.config import DatabaseSection
    from shared.db.database import Database

    db: Database | None = None
    with bench_agent_stack("bench-ingest") as bench:
        try:
            stack, url = bench.stack, bench.db_url
            token = bench.token("bench-ingest@example.com")
            with stack.client(token) as client:
                key = client.post("/api/ingest/keys", json={"name": "bench"}).json()["key"]
            import jwt

            user_id = str(jwt.decode(token, options={"verify_signature": False})["sub"])

            # 1. throughput, ingest then the upload baseline, then ingest again (order effects on a loaded machine)
            batches = 10 * N * CLIENTS
            otlp_headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-protobuf"}
            upload_headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
            throughput(f"{stack.api_url}/v1/traces", otlp_headers, [otlp_batch(BATCH)], 1)  # warm the route
            figures = []
            for label, target, headers, make in (
                ("OTLP /v1/traces", "/v1/traces", otlp_headers, otlp_batch),
                ("upload /api/usage (baseline)", "/api/usage", upload_headers, jsonl_batch),
                ("OTLP /v1/traces, again", "/v1/traces", otlp_headers, otlp_batch),
            ):
                bodies = [make(BATCH) for _ in range(batches)]
                seconds, refused = throughput(f"{stack.api_url}{target}", headers, bodies, CLIENTS)
                rate = batches * BATCH / seconds
                figures.append(rate)
                print(
                    f"{label}: {batches} requests x {BATCH} records, {CLIENTS} clients, {seconds:.2f} s, "
                    f"{rate:,.0f} records/s, {refused} answered 429/503 and resent",
                    flush=True,
                )
            print(f"ingest / upload throughput ratio: {statistics.fmean([figures[0], figures[2]]) / figures[1]:.2f}")

            # 2. export -> visible to the analysis tools
            db = Database(DatabaseSection.model_validate({"database_url": url, "db_pool_size": 2}), "bench-ingest")

            def records() -> int:
                return int(Toolbox(db, user_id).call("usage_overview")["records"])

            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor

            provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
            provider.add_span_processor(
                SimpleSpanProcessor(
                    OTLPSpanExporter(endpoint=f"{stack.api_url}/v1/traces", headers={"Authorization": f"Bearer {key}"})
                )
            )
            tracer = provider.get_tracer("bench")

            def export_one() -> None:
                with tracer.start_as_current_span("chat gpt-4o-mini", attributes=chat_attrs(1)):
                    pass

            def upload_one() -> None:
                response = httpx.post(
                    f"{stack.api_url}/api/usage", content=jsonl_batch(1), headers=upload_headers, trust_env=False
                )
                assert response.status_code == 201, response.text

            # Let the worker's refresh of the throughput phase land, so the tools read rollups as in production.
            time.sleep(25)
            # Every ingest sample first: an upload raises live_floor, after which no older rollup is served (the
            # tools compute live), which would hide the rollup lag that streamed records see.
            ingest_s, upload_s = [], []
            for _ in range(3 * N):
                ingest_s.append(visible_after(export_one, records, records()))
                time.sleep(2)
            for _ in range(3 * N):
                upload_s.append(visible_after(upload_one, records, records()))
            provider.shutdown()
            print(
                f"export -> visible to the tools (OTLP, one span, SimpleSpanProcessor): median "
                f"{statistics.median(ingest_s):.2f} s ({', '.join(f'{s:.2f}' for s in ingest_s)})",
                flush=True,
            )
            print(
                f"upload -> visible to the tools (baseline, one row): median {statistics.median(upload_s):.2f} s "
                f"({', '.join(f'{s:.2f}' for s in upload_s)})",
                flush=True,
            )
            print(f"records in the account: {records():,}; load average {open('/proc/loadavg').read().split()[:3]}")
        finally:
            if db is not None:
                db.close()


if __name__ == "__main__":
    main()
