"""Where an idle WebSocket's memory goes: the bridge against the bare echo app, under tracemalloc.

`python -m tests.bench.ws_memory [--conns 300] [--top 25]` (not part of `make bench`: a diagnostic). On the local
stack of bench_ws (embedded PostgreSQL, Pub/Sub and Firestore emulators, auth's keys), each server runs in a
child process that starts tracemalloc and dumps a snapshot on SIGUSR1. The client opens 5 connections (warming
lazy imports), starts tracing with a first snapshot, opens ``--conns`` more idle ones (the bridge's with the
jwt-auth subprotocol token, as bench_ws does), waits 2 s and takes another. Printed: traced heap growth and RSS
growth per connection, the growth by the innermost frame of a file of interest (who asked for the memory), and
the top allocation sites. tracemalloc slows the servers and adds its own overhead to RSS: compare traced bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path
from typing import Any

WARM = 5
FRAMES = 30
# The innermost frame in one of these decides a traced block's group (longest prefix first).
GROUPS = [
    ("functions/ws_bridge/", "bridge"),
    ("shared/", "shared"),
    ("starlette/", "starlette"),
    ("uvicorn/", "uvicorn"),
    ("websockets/", "websockets"),
    ("asyncio/", "asyncio"),
]


# -- the server side: a server with tracemalloc and a SIGUSR1 snapshot ---------------------------------------


def serve(kind: str, port: int, dump_dir: Path) -> None:
    count = [0]

    def dump(_sig: int, _frame: Any) -> None:
        # Tracing starts at the first signal: the bridge's start-up (gRPC, the Pub/Sub client) under tracemalloc
        # would outlast its components' timeouts, and only what the connections allocate afterwards matters.
        if not tracemalloc.is_tracing():
            tracemalloc.start(FRAMES)
        count[0] += 1
        path = dump_dir / f"{kind}-{count[0]}.snapshot"
        tracemalloc.take_snapshot().dump(str(path) + ".tmp")
        os.replace(str(path) + ".tmp", path)

    signal.signal(signal.SIGUSR1, dump)
    if kind == "echo":
        from tests.bench.bench_ws import serve_echo

        serve_echo(port)
    else:
        from functions.ws_bridge.__main__ import main

        sys.argv = ["functions.ws_bridge", "--port", str(port)]
        main()


# -- the client side --------------------------------------------------------------------------------------------


def snapshot(proc: Any, kind: str, dump_dir: Path, n: int) -> tracemalloc.Snapshot:
    path = dump_dir / f"{kind}-{n}.snapshot"
    os.kill(proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 120
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no snapshot from the {kind} server")
        time.sleep(0.1)
    return tracemalloc.Snapshot.load(str(path)).filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap*")]
    )


def group_of(trace: tracemalloc.Traceback) -> str:
    for frame in reversed(list(trace)):  # tracemalloc keeps the most recent frame last when sorted this way
        for prefix, name in GROUPS:
            if prefix in frame.filename:
                return f"{name} {Path(frame.filename).name}:{frame.lineno}"
    return "other"


def report(kind: str, before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, n: int, top: int) -> None:
    total = sum(s.size_diff for s in after.compare_to(before, "filename"))
    print(f"\n{kind}: traced heap +{total / n / 1024:.1f} KiB per connection ({n} connections)")
    groups: dict[str, int] = defaultdict(int)
    for stat in after.compare_to(before, "traceback"):
        groups[group_of(stat.traceback)] += stat.size_diff
    print("  by the innermost frame in the bridge, shared, starlette, uvicorn, websockets or asyncio (bytes/conn):")
    for name, size in sorted(groups.items(), key=lambda kv: -kv[1])[:top]:
        if abs(size) / n >= 8:
            print(f"    {size / n:8.0f}  {name}")
    print("  top allocation sites (bytes/conn):")
    for stat in after.compare_to(before, "lineno")[:top]:
        frame = stat.traceback[0]
        print(f"    {stat.size_diff / n:8.0f}  {frame.filename.split('site-packages/')[-1]}:{frame.lineno}")


def measure(stack: Any, kind: str, token: str, conns: int, top: int, dump_dir: Path) -> None:
    import psutil

    from emulators.postgres import free_port
    from emulators.process import ManagedProcess
    from tests.bench.bench_ws import open_many, rss_mb, wait_port

    port = free_port()
    argv = [sys.executable, "-m", "tests.bench.ws_memory", "--serve", kind, "--port", str(port)]
    argv += ["--dump-dir", str(dump_dir)]
    if kind == "bridge":
        proc = ManagedProcess(
            "ws-bridge", argv, env=stack.bridge_env(MAX_CONNECTIONS_PER_USER="100000"), sink=sys.stderr
        )
        proc.start()
        proc.wait_http(f"http://127.0.0.1:{port}/health/ready", timeout_s=120)
        url = f"ws://127.0.0.1:{port}/ws"
    else:
        proc = ManagedProcess("ws-echo", argv, sink=None).start()
        wait_port(port)
        url = f"ws://127.0.0.1:{port}/"
    stack.procs.append(proc)
    token_or_none = token if kind == "bridge" else None

    async def run() -> tuple[tracemalloc.Snapshot, tracemalloc.Snapshot, float, float]:
        warm = await open_many(url, WARM, token_or_none)
        await asyncio.sleep(1)
        rss_before, threads_before = rss_mb(proc.pid), psutil.Process(proc.pid).num_threads()
        first = await asyncio.to_thread(snapshot, proc, kind, dump_dir, 1)
        sockets = await open_many(url, conns, token_or_none)
        await asyncio.sleep(2)
        rss_after, threads_after = rss_mb(proc.pid), psutil.Process(proc.pid).num_threads()
        second = await asyncio.to_thread(snapshot, proc, kind, dump_dir, 2)
        alive = sum(1 for ws in sockets if ws.state.name == "OPEN")
        assert alive == conns, f"{conns - alive} connections dropped while idle"
        await asyncio.gather(*(ws.close() for ws in [*warm, *sockets]), return_exceptions=True)
        print(f"\n{kind}: threads {threads_before} -> {threads_after}")
        return first, second, rss_before, rss_after

    first, second, rss_before, rss_after = asyncio.run(run())
    proc.stop()
    print(
        f"\n{kind}: RSS {rss_before:.0f} -> {rss_after:.0f} MiB, {(rss_after - rss_before) * 1024 / conns:.1f} KiB per"
    )
    report(kind, first, second, conns, top)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.ws_memory")
    parser.add_argument("--conns", type=int, default=300)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--kinds", default="bridge,echo")
    parser.add_argument("--serve", choices=["bridge", "echo"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--dump-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.dump_dir)
        return
    from tests.bench.bench_ws import Stack, raise_fd_limit

    raise_fd_limit(args.conns + WARM + 512)
    print(f"load average {open('/proc/loadavg').read().split()[:3]}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ws-memory-") as tmp:
        stack = Stack(Path(tmp)).start()
        try:
            token = stack.users(1)[0][2]
            for kind in args.kinds.split(","):
                measure(stack, kind, token, args.conns, args.top, Path(tmp))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
