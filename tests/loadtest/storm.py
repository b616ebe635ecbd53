"""Scenario 3, WebSocket storm: N clients connect to a just-started bridge within one window, subscribe to a
thread, and receive every event of a run. The floor (tests/loadtest/empty_ws.py) takes the same storm."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.loadtest.context import RunContext, ticking
from tests.loadtest.instances import Instance, stop_all_async
from tests.loadtest.model import ScenarioResult
from tests.loadtest.quiet import settle
from tests.loadtest.stats import median, percentile, ratio, rounded
from tests.loadtest.targets import Target

WAIT_S = 60.0  # a client not subscribed, or a run not delivered, by then has failed
RETRYABLE_CLOSE = frozenset({1012, 1013})  # docs/WEBSOCKET.md: reconnect (with backoff)


@dataclass
class ClientRecord:
    index: int
    t_start: float  # when it began connecting, seconds since spawn
    connect_ms: float | None = None  # start -> subscription acknowledged
    t_connected: float | None = None
    events: int = 0
    first_event_ms: float | None = None  # from the trigger
    events_ms: float | None = None  # trigger -> terminal event
    retries: int = 0  # refused with a retryable close code, then reconnected
    error: str | None = None


class StormProtocol(Protocol):
    """How to talk to one kind of server: connect, subscribe, start a run, recognise its events."""

    def connect_args(self, inst: Instance, index: int) -> tuple[str, dict[str, Any]]: ...

    async def subscribe(self, ws: ClientConnection, index: int) -> None: ...

    async def trigger(self, inst: Instance) -> None: ...

    def is_event(self, frame: dict[str, Any]) -> bool: ...

    def is_terminal(self, frame: dict[str, Any]) -> bool: ...


class FloorProtocol:
    thread = "storm"

    def __init__(self, events: int) -> None:
        self.events = events

    def connect_args(self, inst: Instance, index: int) -> tuple[str, dict[str, Any]]:
        return f"{inst.ws_url}/ws", {}

    async def subscribe(self, ws: ClientConnection, index: int) -> None:
        await ws.send(json.dumps({"type": "subscribe", "thread_id": self.thread}))
        while json.loads(await ws.recv()).get("type") != "subscribed":
            pass

    async def trigger(self, inst: Instance) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
            response = await client.post(f"{inst.url}/emit", params={"thread_id": self.thread, "n": self.events})
            response.raise_for_status()

    def is_event(self, frame: dict[str, Any]) -> bool:
        return frame.get("run_id") == "floor"

    def is_terminal(self, frame: dict[str, Any]) -> bool:
        return frame.get("type") == "agent_completed"


def describe(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"handshake refused: HTTP {exc.response.status_code}"
    if isinstance(exc, ConnectionClosed):
        frame = exc.rcvd
        return f"closed by server: {frame.code} {frame.reason}" if frame else "connection closed without a close frame"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"[:300]


class Storm:
    def __init__(self, ctx: RunContext, target: Target, protocol: StormProtocol) -> None:
        self.ctx = ctx
        self.target = target
        self.protocol = protocol
        self.epoch = time.monotonic()
        self.inst = Instance(target, 0, ctx.env, self.epoch, ctx.log_file(f"s3-{target.name}"))
        self.clients = [ClientRecord(i, 0.0) for i in range(ctx.sizes.storm_clients)]
        self.trigger_at: float | None = None
        self.triggered = asyncio.Event()

    async def client(self, record: ClientRecord) -> None:
        """Connect and subscribe; a refusal with a retryable close code (1012, 1013) is retried with backoff,
        as docs/WEBSOCKET.md tells clients to, until WAIT_S; then wait for the run's events."""
        started = time.monotonic()
        record.t_start = started - self.epoch
        url, kwargs = self.protocol.connect_args(self.inst, record.index)
        delay = 0.2
        while True:
            try:
                async with connect(url, open_timeout=WAIT_S, max_queue=None, compression=None, **kwargs) as ws:
                    await asyncio.wait_for(self.protocol.subscribe(ws, record.index), WAIT_S)
                    now = time.monotonic()
                    record.connect_ms = (now - started) * 1000
                    record.t_connected = now - self.epoch
                    await self.receive(ws, record)
                    return
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                if record.connect_ms is None and code in RETRYABLE_CLOSE and time.monotonic() - started < WAIT_S:
                    record.retries += 1
                    await asyncio.sleep(random.uniform(delay / 2, delay))
                    delay = min(2.0, delay * 2)
                    continue
                record.error = describe(exc)
                return
            except Exception as exc:
                record.error = describe(exc)
                return

    async def receive(self, ws: ClientConnection, record: ClientRecord) -> None:
        async with asyncio.timeout(WAIT_S * 2):
            async for raw in ws:
                frame = json.loads(raw)
                if not self.protocol.is_event(frame):
                    continue
                record.events += 1
                since = (time.monotonic() - (self.trigger_at or time.monotonic())) * 1000
                if record.first_event_ms is None:
                    record.first_event_ms = since
                if self.protocol.is_terminal(frame):
                    record.events_ms = since
                    return
        raise ConnectionError("the connection ended before the run's last event")

    async def run(self) -> dict[str, Any]:
        sizes = self.ctx.sizes
        self.inst.spawn()
        try:
            if not await self.inst.wait_port(WAIT_S):
                return self.result()
            opened = time.monotonic()
            spacing = sizes.storm_window_s / max(1, len(self.clients))
            tasks = []
            line = lambda: (  # noqa: E731
                f"storm: {self.target.name}: {len(tasks)}/{len(self.clients)} started, "
                f"{sum(c.connect_ms is not None for c in self.clients)} subscribed, "
                f"{sum(c.events_ms is not None for c in self.clients)} served, "
                f"{sum(c.error is not None for c in self.clients)} failed"
            )
            async with ticking(self.ctx.progress, line):
                for record in self.clients:  # spread evenly over the window, from the moment the port opened
                    await asyncio.sleep(max(0.0, opened + record.index * spacing - time.monotonic()))
                    tasks.append(asyncio.create_task(self.client(record)))
                deadline = time.monotonic() + WAIT_S
                while time.monotonic() < deadline and not all(
                    c.connect_ms is not None or c.error for c in self.clients
                ):
                    await asyncio.sleep(0.05)
                self.trigger_at = time.monotonic()
                await self.protocol.trigger(self.inst)
                done, pending = await asyncio.wait(tasks, timeout=WAIT_S)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            for record in self.clients:
                if record.error is None and record.events_ms is None:
                    record.error = "no terminal event within the wait" if record.connect_ms else "never subscribed"
        finally:
            await stop_all_async([self.inst])
        return self.result()

    def result(self) -> dict[str, Any]:
        connects = [c.connect_ms for c in self.clients if c.connect_ms is not None]
        served = [c.events_ms for c in self.clients if c.events_ms is not None]
        firsts = [c.first_event_ms for c in self.clients if c.first_event_ms is not None]
        connected_at = [c.t_connected for c in self.clients if c.t_connected is not None]
        errors: dict[str, int] = {}
        for c in self.clients:
            if c.error:
                errors[c.error] = errors.get(c.error, 0) + 1
        record = self.inst.record
        return {
            "target": self.target.name,
            "clients": len(self.clients),
            "subscribed": len(connects),
            "served": len(served),
            "failed": sum(1 for c in self.clients if c.error),
            "spawn_to_port_ms": rounded(record.spawn_to_port_ms),
            "spawn_to_first_subscribed_ms": rounded(min(connected_at) * 1000 if connected_at else None),
            "spawn_to_all_subscribed_ms": rounded(
                max(connected_at) * 1000 if len(connects) == len(self.clients) else None
            ),
            "connect_p50_ms": rounded(percentile(connects, 50)),
            "connect_p95_ms": rounded(percentile(connects, 95)),
            "connect_p99_ms": rounded(percentile(connects, 99)),
            "connect_max_ms": rounded(max(connects, default=None)),
            "first_event_p50_ms": rounded(percentile(firsts, 50)),
            "all_events_p50_ms": rounded(percentile(served, 50)),
            "all_events_p99_ms": rounded(percentile(served, 99)),
            "reconnected_after_1012_1013": sum(1 for c in self.clients if c.retries),
            "instance_error": record.error,
            "errors": errors,
        }

    def raw(self) -> dict[str, Any]:
        return {"target": self.target.name, "clients": [asdict(c) for c in self.clients]}


async def protocol_for(ctx: RunContext, target: Target) -> StormProtocol | str:
    """The protocol for a target, or why the storm cannot run against it."""
    if target.floor_of:
        return FloorProtocol(ctx.sizes.storm_events)
    from tests.loadtest import bridge

    return await bridge.storm_protocol(ctx)


async def run(ctx: RunContext) -> ScenarioResult:
    result = ScenarioResult(3, "WebSocket storm")
    rows, raws = [], []
    for target in ctx.ws_targets:
        protocol = await protocol_for(ctx, target)
        if isinstance(protocol, str):
            ctx.unavailable[target.name] = protocol
            continue
        await settle(ctx.progress, f"storm: before {target.name}", ctx.env.get("DATABASE_URL"))
        storm = Storm(ctx, target, protocol)
        row = await storm.run()
        rows.append(row)
        raws.append(storm.raw())
        ctx.progress.step(
            f"storm: {target.name}: {row['subscribed']}/{row['clients']} subscribed, "
            f"{row['served']} served, {row['failed']} failed, connect p50 {row['connect_p50_ms']} ms"
        )
        for cause, count in row["errors"].items():
            result.failures.append({"target": target.name, "request": "client", "cause": cause, "count": count})
        if row["instance_error"]:
            result.failures.append(
                {"target": target.name, "request": "instance", "cause": row["instance_error"], "count": 1}
            )
    floor = next((r for r in rows if r["target"] == "empty-ws"), None)
    for row in rows:
        for key in ("connect_p50_ms", "connect_p99_ms", "spawn_to_first_subscribed_ms"):
            row[f"{key.removesuffix('_ms')}_x_floor"] = ratio(row[key], floor[key] if floor else None)
    result.summary = {"rows": rows, "clients": ctx.sizes.storm_clients, "window_s": ctx.sizes.storm_window_s}
    bridge_row = next((r for r in rows if r["target"] == "ws-bridge"), None)
    if bridge_row is None:
        result.status = "not available"
        result.reason = ctx.unavailable.get("ws-bridge", "the bridge did not start")
        result.notes.append("only the floor (empty-ws) was stormed; its figures are in the table")
    else:
        result.status = "failures" if result.failures else "ok"
    result.summary["median_connect_ms"] = median(r["connect_p50_ms"] for r in rows)
    result.raw = {"runs": raws}
    return result
