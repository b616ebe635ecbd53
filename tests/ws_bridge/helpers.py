"""Test helpers for ws_bridge: an event source that does exactly what the agent worker does, a WebSocket
client wrapper, and a raw-socket client that never answers pings."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pg8000.dbapi
import websockets
from websockets.exceptions import ConnectionClosed

from emulators.process import ManagedProcess
from shared.db.connect import parse_database_url
from shared.models.events import AgentEvent

ORIGIN = "http://localhost:3000"


@dataclass
class Bridge:
    process: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def startup(self) -> dict[str, Any]:
        return httpx.get(f"{self.http}/health/startup", timeout=5).json()

    def wait(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 15, what: str = "state") -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            body = self.startup()
            if predicate(body):
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {body}")
            time.sleep(0.05)

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.process.pid).memory_info().rss / 2**20


@dataclass
class EventSource:
    """Appends to the Firestore event log, then publishes on agent-events with ordering key = thread id and
    the worker's attributes: the agent worker's emit, without the worker."""

    project: str
    prefix: str
    _publisher: Any = None
    _firestore: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def publisher(self) -> Any:
        from google.cloud import pubsub_v1

        with self._lock:
            if self._publisher is None:
                self._publisher = pubsub_v1.PublisherClient(
                    publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
                )
        return self._publisher

    def firestore(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import firestore

        with self._lock:
            if self._firestore is None:
                assert os.environ.get("FIRESTORE_EMULATOR_HOST"), "the Firestore emulator fixture sets this"
                self._firestore = firestore.Client(project=self.project, credentials=AnonymousCredentials())
        return self._firestore

    def run_doc(self, run_id: str) -> Any:
        return self.firestore().collection(f"{self.prefix}runs").document(run_id)

    @staticmethod
    def event(thread_id: str, run_id: str, seq: int, type_: str = "partial_result", pad: int = 0) -> AgentEvent:
        data: dict[str, Any] = {"text": f"part {seq}"}
        if pad:
            data["pad"] = "x" * pad
        return AgentEvent(type=type_, run_id=run_id, thread_id=thread_id, seq=seq, agent_name="test", data=data)

    def log(self, user_id: str, event: AgentEvent) -> None:
        from shared.firestore import ttl_expiry

        run = self.run_doc(event.run_id)
        batch = self.firestore().batch()
        batch.create(
            run.collection("events").document(f"{event.seq:010d}"),
            {**event.model_dump(mode="json"), "user_id": user_id, "expires_at": ttl_expiry(3600)},
        )
        state = {"run_id": event.run_id, "thread_id": event.thread_id, "user_id": user_id, "last_seq": event.seq}
        if event.seq == 1:
            state["created_at"] = event.ts
        batch.set(run, state, merge=True)
        batch.commit()

    def log_many(self, user_id: str, events: list[AgentEvent]) -> None:
        from shared.firestore import ttl_expiry

        for start in range(0, len(events), 400):
            batch = self.firestore().batch()
            for event in events[start : start + 400]:
                doc = self.run_doc(event.run_id).collection("events").document(f"{event.seq:010d}")
                batch.create(doc, {**event.model_dump(mode="json"), "user_id": user_id, "expires_at": ttl_expiry(3600)})
            last = events[min(len(events), start + 400) - 1]
            batch.set(
                self.run_doc(last.run_id),
                {
                    "run_id": last.run_id,
                    "thread_id": last.thread_id,
                    "user_id": user_id,
                    "last_seq": last.seq,
                    "created_at": events[0].ts,
                },
                merge=True,
            )
            batch.commit()

    def publish(self, user_id: str, event: AgentEvent, wait: bool = True) -> Any:
        future = self.publisher().publish(
            f"projects/{self.project}/topics/agent-events",
            event.to_bytes(),
            ordering_key=event.thread_id,
            **event.attributes(user_id),
        )
        if wait:
            future.result(10)
        return future

    def emit(self, user_id: str, thread_id: str, run_id: str, seq: int, type_: str = "partial_result") -> AgentEvent:
        event = self.event(thread_id, run_id, seq, type_)
        self.log(user_id, event)
        self.publish(user_id, event)
        return event

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.stop()
        if self._firestore is not None:
            self._firestore.close()


def make_thread(db_url: str, user_id: str) -> str:
    t = parse_database_url(db_url)
    conn = pg8000.dbapi.connect(user=t.user, password=t.password, host=t.host, port=t.port, database=t.database)
    cur = conn.cursor()
    cur.execute("INSERT INTO threads (user_id, title) VALUES (%s, 'ws test') RETURNING id", (user_id,))
    thread_id = str(cur.fetchone()[0])
    conn.commit()
    conn.close()
    return thread_id


def protocols(token: str) -> list[str]:
    return ["jwt-auth", "jwt." + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")]


async def connect(url: str, token: str | None = None, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    kwargs.setdefault("origin", ORIGIN)
    ws = await websockets.connect(url, subprotocols=protocols(token) if token else None, **kwargs)
    hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert hello["type"] == "connection_established", hello
    return ws, hello


async def recv(ws: Any, timeout: float = 10.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def until(ws: Any, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15.0) -> list[dict]:
    frames: list[dict[str, Any]] = []

    async def loop() -> None:
        while True:
            frame = json.loads(await ws.recv())
            frames.append(frame)
            if predicate(frame):
                return

    await asyncio.wait_for(loop(), timeout)
    return frames


async def subscribe(ws: Any, thread_id: str, **extra: Any) -> list[dict[str, Any]]:
    """Subscribe and return the frames up to and including `subscribed` (the replayed events)."""
    await ws.send(json.dumps({"type": "subscribe", "thread_id": thread_id, **extra}))
    return await until(ws, lambda f: f["type"] in ("subscribed", "error"))


async def closed_code(url: str, **kwargs: Any) -> tuple[int | None, str | None, list[str]]:
    """Connect and read until the server closes; (code, reason, frames received before the close)."""
    kwargs.setdefault("origin", ORIGIN)
    ws = await websockets.connect(url, **kwargs)
    got: list[str] = []
    try:
        while True:
            got.append(await asyncio.wait_for(ws.recv(), 10))
    except ConnectionClosed:
        pass
    return ws.close_code, ws.close_reason, got


def seqs(frames: list[dict[str, Any]], run_id: str | None = None) -> list[int]:
    return [f["seq"] for f in frames if "seq" in f and (run_id is None or f["run_id"] == run_id)]


class RawClient:
    """A WebSocket client on a bare socket: it completes the handshake and then only reads, never answering
    a ping, like a peer that vanished behind a NAT."""

    def __init__(self, port: int, token: str, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf:  # before connecting, so the TCP window is small from the start
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next server frame (servers never mask)."""
        b0, b1 = self._read(2)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        return b0 & 0x0F, self._read(length)

    def send_text(self, text: str) -> None:
        """One masked text frame (clients must mask)."""
        payload = text.encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        elif len(payload) < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", len(payload))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def json(self) -> dict[str, Any]:
        """The next text frame as JSON (skipping pings)."""
        while True:
            opcode, payload = self.frame()
            if opcode == 0x1:
                return json.loads(payload)
            if opcode == 0x8:
                raise EOFError(f"closed {struct.unpack('!H', payload[:2])[0] if payload else None}")

    def drain(self) -> tuple[list[dict[str, Any]], int | None, str]:
        """Read to the end: (text frames as JSON, close code, close reason)."""
        frames: list[dict[str, Any]] = []
        try:
            while True:
                opcode, payload = self.frame()
                if opcode == 0x1:
                    frames.append(json.loads(payload))
                elif opcode == 0x8:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    return frames, code, payload[2:].decode()
        except (EOFError, ConnectionResetError):
            return frames, None, ""

    def close(self) -> None:
        self.sock.close()


def new_run() -> str:
    return str(uuid.uuid4())
