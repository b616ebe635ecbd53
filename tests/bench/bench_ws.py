"""ws_bridge benchmarks (`python -m tests.bench.bench_ws`, or `make bench`). Prints figures only.

1. Idle connections held by one bridge process (1,000 and 5,000 by default) and memory per connection (RSS delta
   of the bridge / connections), against a bare uvicorn + websockets-sansio echo app (same server settings, no
   application) holding the first count, same run.
2. Event delivery at 1,000 connected clients (1,000 users, one thread each, each client subscribed to its
   thread): events published on agent-events (ordering key = thread, as the worker does) round-robin over the
   threads from BENCH_WS_PUBLISHERS child processes, paced at BENCH_WS_RATE/s for 10 s, then a burst of
   BENCH_WS_EVENTS; delivery rate and latency from the event's creation just before publish() to the client's
   receive, p50/p99 (wall clock of one machine). Baseline, same run, same publishers and phases: a bare
   subscriber in this process (emulator + client library, no bridge, no WebSocket).
3. Cold start: spawn -> first accepted WebSocket (connection_established received), median of 3, against the bare
   echo app (spawn -> first accepted WebSocket) in the same run.

Local stack: embedded PostgreSQL, the Pub/Sub and Firestore emulators (as NETRA_EMULATORS chooses), the auth
function (its JWKS; tokens are signed with its local keys, users and threads inserted with SQL in bulk). Every
process shares the machine's cores with the clients, so the figures are a floor, not a capacity plan.

Knobs: BENCH_WS_IDLE=1000,5000  BENCH_WS_CLIENTS=1000  BENCH_WS_EVENTS=3000 (burst)  BENCH_WS_RATE=50 (paced,
for 10 s)  BENCH_WS_PUBLISHERS=2  BENCH_WS_PARTS=cold,idle,delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

IDLE_COUNTS = [int(x) for x in os.environ.get("BENCH_WS_IDLE", "1000,5000").split(",") if x.strip()]
CLIENTS = int(os.environ.get("BENCH_WS_CLIENTS", "1000"))
EVENTS = int(os.environ.get("BENCH_WS_EVENTS", "3000"))
RATE = int(os.environ.get("BENCH_WS_RATE", "50"))
PUBLISHERS = int(os.environ.get("BENCH_WS_PUBLISHERS", "2"))
PARTS = {p.strip() for p in os.environ.get("BENCH_WS_PARTS", "cold,idle,delivery").split(",")}
COLD_RUNS = 3
CONNECT_CONCURRENCY = 200


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def cpu_s(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


# -- the baseline: a bare ASGI echo app on uvicorn + websockets ---------------------------------------------


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": '{"type":"connection_established"}'})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})


def serve_echo(port: int) -> None:
    import uvicorn

    # The same server settings as the bridge (functions/ws_bridge/__main__.py), without the application.
    uvicorn.run(
        echo_app,
        host="127.0.0.1",
        port=port,
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        log_level="warning",
        lifespan="on",
        backlog=4096,
    )


# -- the local stack ------------------------------------------------------------------------------------------


class Stack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Any] = []
        self.project = f"bench-ws-{uuid.uuid4().hex[:6]}"

    def start(self) -> Stack:
        from emulators.postgres import EmbeddedPostgres
        from shared.db.connect import Connector
        from shared.db.migrate import MigrateSettings, migrate
        from tests.fixtures.auth import start_auth
        from tests.fixtures.firestore import start_emulator_process as start_firestore
        from tests.fixtures.pubsub import start_emulator_process as start_pubsub

        self.pg = EmbeddedPostgres(self.workdir / "pg").start()
        self.db_url = self.pg.url_for("bench_ws")
        connector = Connector(MigrateSettings.model_validate({"database_url": self.db_url}))
        migrate(connector)
        connector.close()
        pubsub_proc, self.pubsub_host = start_pubsub()
        firestore_proc, self.firestore_host = start_firestore()
        self.procs += [pubsub_proc, firestore_proc]
        os.environ["PUBSUB_EMULATOR_HOST"] = self.pubsub_host
        self.auth = start_auth(self.db_url, self.workdir / "auth", firestore_host=self.firestore_host)
        self.procs.append(self.auth.process)
        from google.cloud import pubsub_v1

        self.publisher = pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        )
        self.topic = f"projects/{self.project}/topics/agent-events"
        self.publisher.create_topic(name=self.topic)
        return self

    def bridge_env(self, **extra: str) -> dict[str, str]:
        return {
            "NETRA_ENV": "test",
            "NETRA_DOTENV": "/nonexistent/.env",
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "WARNING",
            "DATABASE_URL": self.db_url,
            "PUBSUB_EMULATOR_HOST": self.pubsub_host,
            "FIRESTORE_EMULATOR_HOST": self.firestore_host,
            "GOOGLE_CLOUD_PROJECT": self.project,
            "AUTH_URL": self.auth.url,
            "ALLOWED_ORIGINS": "http://localhost:*",
            **self.auth.env,
            **extra,
        }

    def spawn_bridge(self, port: int, **extra: str) -> Any:
        from emulators.process import ManagedProcess

        argv = [sys.executable, "-m", "functions.ws_bridge", "--port", str(port)]
        proc = ManagedProcess("ws-bridge", argv, env=self.bridge_env(**extra), sink=None).start()
        self.procs.append(proc)
        return proc

    def spawn_echo(self, port: int) -> Any:
        from emulators.process import ManagedProcess

        argv = [sys.executable, "-m", "tests.bench.bench_ws", "--echo-server", "--port", str(port)]
        proc = ManagedProcess("ws-echo", argv, sink=None).start()
        self.procs.append(proc)
        return proc

    def users(self, n: int) -> list[tuple[str, str, str]]:
        """n users with one thread each, inserted in bulk; (user_id, thread_id, token)."""
        import pg8000.dbapi

        from shared.db.connect import parse_database_url
        from shared.tokens.keyset import parse_keyset, sign_access_token

        t = parse_database_url(self.db_url)
        conn = pg8000.dbapi.connect(user=t.user, password=t.password, host=t.host, port=t.port, database=t.database)
        cur = conn.cursor()
        tag = uuid.uuid4().hex[:8]
        cur.execute(
            "INSERT INTO users (email) SELECT 'bench-' || g || '-' || %s || '@example.com' "
            "FROM generate_series(1, %s) g RETURNING id::text",
            (tag, n),
        )
        user_ids = [r[0] for r in cur.fetchall()]
        cur.execute(
            "INSERT INTO threads (user_id, title) SELECT u::uuid, 'bench' FROM unnest(%s::text[]) u "
            "RETURNING id::text, user_id::text",
            (user_ids,),
        )
        threads = {user: thread for thread, user in cur.fetchall()}
        conn.commit()
        conn.close()
        keyset = parse_keyset((self.auth.local_dir / "auth_keyset.json").read_text())
        out = []
        for user_id in user_ids:
            token, _ = sign_access_token(
                keyset,
                user_id=user_id,
                email=f"{user_id}@example.com",
                permissions=[],
                issuer=self.auth.issuer,
                audience=self.auth.audience,
                ttl_s=3600,
            )
            out.append((user_id, threads[user_id], token))
        return out

    def stop(self) -> None:
        try:
            self.publisher.stop()
        except Exception:  # noqa: S110 - best effort at teardown
            pass
        for proc in reversed(self.procs):
            proc.stop()
        self.pg.destroy()


def protocols(token: str) -> list[str]:
    import base64

    return ["jwt-auth", "jwt." + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")]


async def open_many(url: str, n: int, token: str | None) -> list[Any]:
    import websockets

    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> Any:
        async with sem:
            ws = await websockets.connect(
                url, subprotocols=protocols(token) if token else None, open_timeout=60, ping_interval=None, max_queue=4
            )
            await asyncio.wait_for(ws.recv(), 30)  # connection_established
            return ws

    return await asyncio.gather(*(one() for _ in range(n)))


def wait_port(port: int, timeout_s: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"port {port} never opened")


# -- 1. idle connections -----------------------------------------------------------------------------------------


def bench_idle(stack: Stack, token: str) -> None:
    from emulators.postgres import free_port

    for kind in ("bridge", "echo"):
        for n in IDLE_COUNTS if kind == "bridge" else IDLE_COUNTS[:1]:
            port = free_port()
            if kind == "bridge":
                proc = stack.spawn_bridge(port, MAX_CONNECTIONS_PER_USER="100000")
                proc.wait_http(f"http://127.0.0.1:{port}/health/ready", timeout_s=60)
                url = f"ws://127.0.0.1:{port}/ws"
            else:
                proc = stack.spawn_echo(port)
                wait_port(port)
                url = f"ws://127.0.0.1:{port}/"
            time.sleep(0.5)
            before = rss_mb(proc.pid)

            async def hold(url: str = url, n: int = n, kind: str = kind) -> tuple[float, float]:
                started = time.perf_counter()
                sockets = await open_many(url, n, token if kind == "bridge" else None)
                took = time.perf_counter() - started
                await asyncio.sleep(2)
                after = rss_mb(proc.pid)  # noqa: B023 - measured while this loop's process holds them
                alive = sum(1 for ws in sockets if ws.state.name == "OPEN")
                assert alive == n, f"{n - alive} connections dropped while idle"
                await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
                return took, after

            took, after = asyncio.run(hold())
            per_conn_kb = (after - before) * 1024 / n
            print(
                f"idle {kind:6s} {n:5d} connections: opened in {took:.1f}s ({n / took:.0f}/s), RSS "
                f"{before:.0f} -> {after:.0f} MiB, {per_conn_kb:.1f} KiB per connection",
                flush=True,
            )
            proc.stop()


# -- 2. delivery at 1,000 clients -------------------------------------------------------------------------------


def publisher_main(
    host: str, topic: str, plan: list[tuple[str, str, str]], seqs: dict[str, int], n: int, rate: float | None
) -> None:
    """Publish n events round-robin over the threads, as the worker does (ordering key = thread id)."""
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    from google.cloud import pubsub_v1

    from shared.models.events import AgentEvent

    publisher = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    futures = []
    start = time.perf_counter()
    for i in range(n):
        user_id, thread, run_id = plan[i % len(plan)]
        seqs[thread] += 1
        event = AgentEvent(
            type="partial_result",
            run_id=run_id,
            thread_id=thread,
            seq=seqs[thread],
            agent_name="bench",
            data={"t": time.time(), "text": "x" * 64},
        )
        futures.append(publisher.publish(topic, event.to_bytes(), ordering_key=thread, **event.attributes(user_id)))
        if rate:
            delay = start + (i + 1) / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
    for future in futures:
        future.result(60)
    publisher.stop()


def publish(stack: Stack, plan: list[tuple[str, str, str]], seqs: dict[str, int], n: int, rate: float | None) -> float:
    """n events round-robin over plan's threads from PUBLISHERS child processes (disjoint thread sets, so each
    thread's order holds), so the publishers' CPU does not queue behind the clients' (GIL). Seconds taken."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    groups = [plan[i::PUBLISHERS] for i in range(PUBLISHERS)]
    counts = [n // PUBLISHERS + (1 if i < n % PUBLISHERS else 0) for i in range(PUBLISHERS)]
    started = time.perf_counter()
    children = []
    for group, count in zip(groups, counts, strict=True):
        share = rate / PUBLISHERS if rate else None
        args = (stack.pubsub_host, stack.topic, group, dict(seqs), count, share)
        children.append(ctx.Process(target=publisher_main, args=args))
    for child in children:
        child.start()
    for child in children:
        child.join(300)
    for group, count in zip(groups, counts, strict=True):
        for i in range(count):
            seqs[group[i % len(group)][1]] += 1
    return time.perf_counter() - started


PHASES = ((f"paced {RATE}/s", RATE, RATE * 10), ("burst", None, EVENTS))


def bench_pubsub_baseline(stack: Stack, users: list[tuple[str, str, str]]) -> dict[str, tuple[float, float]]:
    """The same publishers and phases into a bare subscriber in this process (no bridge, no WebSocket): what
    the emulator and the client library cost on their own, the baseline of the delivery figures."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    name = f"projects/{stack.project}/subscriptions/bench-baseline-{uuid.uuid4().hex[:6]}"
    subscriber.create_subscription(request={"name": name, "topic": stack.topic, "enable_message_ordering": True})
    latencies: list[float] = []
    stamps: list[float] = []  # receive times (callbacks run on several threads; list.append is atomic)

    def callback(message: Any) -> None:
        now = time.time()
        latencies.append((now - json.loads(message.data)["data"]["t"]) * 1000)
        stamps.append(now)
        message.ack()

    future = subscriber.subscribe(name, callback=callback)
    plan = [(user_id, thread, str(uuid.uuid4())) for user_id, thread, _ in users]
    seqs = {thread: 0 for _, thread, _ in users}
    out = {}
    try:
        for label, rate, count in PHASES:
            latencies.clear()
            stamps.clear()
            publish_s = publish(stack, plan, seqs, count, rate)
            deadline = time.perf_counter() + 60
            while len(latencies) < count and time.perf_counter() < deadline:
                time.sleep(0.05)
            span = (max(stamps) - min(stamps)) if len(stamps) > 1 else float("nan")
            out[label] = (pct(latencies, 50), pct(latencies, 99))
            print(
                f"baseline {label:14s}: {len(latencies)}/{count} events to one bare subscriber, publish "
                f"{publish_s:.1f}s, received at {(len(latencies) - 1) / span:.0f}/s, latency p50 "
                f"{out[label][0]:.1f} ms p99 {out[label][1]:.1f} ms",
                flush=True,
            )
    finally:
        future.cancel()
        try:
            future.result(timeout=5)  # let the dispatcher finish its acks before the channel closes
        except Exception:  # noqa: S110 - cancelled is the expected outcome
            pass
        subscriber.delete_subscription(request={"subscription": name})
        subscriber.close()
    return out


def bench_delivery(stack: Stack, users: list[tuple[str, str, str]], baseline: dict[str, tuple[float, float]]) -> None:
    import websockets

    from emulators.postgres import free_port

    port = free_port()
    proc = stack.spawn_bridge(port)
    proc.wait_http(f"http://127.0.0.1:{port}/health/ready", timeout_s=60)
    url = f"ws://127.0.0.1:{port}/ws"
    plan = [(user_id, thread, str(uuid.uuid4())) for user_id, thread, _ in users]

    async def run() -> None:
        sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
        sockets: list[Any] = []

        async def join(user: tuple[str, str, str]) -> None:
            async with sem:
                _, thread, token = user
                ws = await websockets.connect(url, subprotocols=protocols(token), open_timeout=60, ping_interval=None)
                await ws.recv()
                await ws.send(json.dumps({"type": "subscribe", "thread_id": thread}))
                assert json.loads(await ws.recv())["type"] == "subscribed"
                sockets.append(ws)

        started = time.perf_counter()
        await asyncio.gather(*(join(u) for u in users))
        print(
            f"delivery: {len(users)} clients connected and subscribed in {time.perf_counter() - started:.1f}s",
            flush=True,
        )
        latencies: list[float] = []
        received = [0]
        first, last = [0.0], [0.0]

        async def reader(ws: Any) -> None:
            try:
                async for text in ws:
                    now = time.time()
                    frame = json.loads(text)
                    if "seq" in frame:
                        latencies.append((now - frame["data"]["t"]) * 1000)
                        received[0] += 1
                        last[0] = time.perf_counter()
                        if received[0] == 1:
                            first[0] = last[0]
            except websockets.ConnectionClosed:
                pass

        readers = [asyncio.ensure_future(reader(ws)) for ws in sockets]
        seqs = {thread: 0 for _, thread, _ in users}
        # Paced below what the publishers sustain (the latency of one event on a busy instance), then a burst
        # (throughput; latency then is mostly queueing behind the burst, in the publishers first).
        for label, rate, count in PHASES:
            latencies.clear()
            received[0] = 0
            cpu0 = cpu_s(proc.pid)
            publish_s = await asyncio.to_thread(publish, stack, plan, seqs, count, rate)
            deadline = time.perf_counter() + 60
            while received[0] < count and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
            span = (last[0] - first[0]) if received[0] > 1 else float("nan")
            p50, p99 = pct(latencies, 50), pct(latencies, 99)
            base50, base99 = baseline[label]
            print(
                f"delivery {label:14s}: {received[0]}/{count} events to {len(users)} clients, "
                f"publish {publish_s:.1f}s, delivered at {(received[0] - 1) / span:.0f}/s, latency p50 {p50:.1f} ms "
                f"p99 {p99:.1f} ms max {max(latencies):.1f} ms (x baseline: p50 {p50 / base50:.2f}, p99 "
                f"{p99 / base99:.2f}); bridge CPU {(cpu_s(proc.pid) - cpu0) * 1e6 / max(1, received[0]):.0f} us "
                "per event",
                flush=True,
            )
        stats = json.loads(__import__("httpx").get(f"http://127.0.0.1:{port}/health/startup").text)["stats"]
        print(f"delivery: bridge counters {stats}; bridge RSS {rss_mb(proc.pid):.0f} MiB", flush=True)
        for task in readers:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)

    asyncio.run(run())
    proc.stop()


# -- 3. cold start ------------------------------------------------------------------------------------------------


async def first_accept(url: str, token: str | None, timeout_s: float = 60) -> None:
    import websockets

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ws = await websockets.connect(url, subprotocols=protocols(token) if token else None, open_timeout=30)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        try:
            if json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "connection_established":
                await ws.close()
                return
        except websockets.ConnectionClosed:  # 1013 while starting: retry
            await asyncio.sleep(0.01)
    raise TimeoutError("no accepted WebSocket")


def bench_cold_start(stack: Stack, token: str) -> None:
    from emulators.postgres import free_port

    results: dict[str, list[float]] = {"bridge": [], "echo": []}
    for _ in range(COLD_RUNS):
        for kind in ("echo", "bridge"):
            port = free_port()
            started = time.perf_counter()
            if kind == "bridge":
                proc = stack.spawn_bridge(port)
                asyncio.run(first_accept(f"ws://127.0.0.1:{port}/ws", token))
                accepted_ms = (time.perf_counter() - started) * 1000
                body = __import__("httpx").get(f"http://127.0.0.1:{port}/health/startup").json()
                parts = ", ".join(
                    f"{k} {v['duration_ms']:.0f}" if v["duration_ms"] is not None else f"{k} {v['status']}"
                    for k, v in body["components"].items()
                )
                print(
                    f"cold start bridge: accepted at {accepted_ms:.0f} ms after spawn; start-up manager up "
                    f"{body['uptime_ms']:.0f} ms by then; components (ms, in parallel where independent): {parts}",
                    flush=True,
                )
            else:
                proc = stack.spawn_echo(port)
                asyncio.run(first_accept(f"ws://127.0.0.1:{port}/", None))
                accepted_ms = (time.perf_counter() - started) * 1000
            results[kind].append(accepted_ms)
            proc.stop()
    bridge, echo = statistics.median(results["bridge"]), statistics.median(results["echo"])
    print(
        f"cold start spawn -> first accepted WebSocket: bridge median {bridge:.0f} ms "
        f"({', '.join(f'{v:.0f}' for v in results['bridge'])}), bare uvicorn+websockets echo median {echo:.0f} ms "
        f"({', '.join(f'{v:.0f}' for v in results['echo'])}), ratio {bridge / echo:.2f}",
        flush=True,
    )


def raise_fd_limit(needed: int) -> None:
    """This process holds every client socket (5,000 idle ones at most): raise its soft limit to the hard one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed * 2)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise SystemExit(f"the file descriptor limit ({soft}) is below the {needed} sockets this benchmark opens")


def main() -> None:
    raise_fd_limit(max([*IDLE_COUNTS, CLIENTS]) + 512)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-ws-") as tmp:
        stack = Stack(Path(tmp)).start()
        try:
            print(f"stack up in {time.monotonic() - started:.1f}s", flush=True)
            users = stack.users(max(CLIENTS, 1))
            token = users[0][2]
            if "cold" in PARTS:
                bench_cold_start(stack, token)
            if "idle" in PARTS:
                bench_idle(stack, token)
            if "delivery" in PARTS:
                baseline = bench_pubsub_baseline(stack, users[:CLIENTS])
                bench_delivery(stack, users[:CLIENTS], baseline)
        finally:
            stack.stop()
    print(f"bench_ws total {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--echo-server", action="store_true", help="run the baseline echo app (internal)")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if args.echo_server:
        serve_echo(args.port)
    else:
        main()
