"""The emulator as an in-process gRPC server: ``start_server(host, port)`` -> EmulatorServer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc

from emulators.pubsub.push import PushManager
from emulators.pubsub.servicers import Publisher, Subscriber
from emulators.pubsub.store import Store

# Every open StreamingPull holds a server thread for its life, so the pool is sized for many
# subscribers plus the unary calls (acks, modacks) they make at the same time.
DEFAULT_WORKERS = 256
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass
class EmulatorServer:
    host: str
    port: int
    store: Store
    push: PushManager
    grpc_server: grpc.Server

    @property
    def address(self) -> str:
        """``host:port`` as PUBSUB_EMULATOR_HOST wants it."""
        return f"{self.host}:{self.port}"

    def stop(self, grace_s: float = 1.0) -> None:
        # Closing the store first wakes every waiting pull so the server can finish its RPCs.
        self.store.close()
        self.grpc_server.stop(grace_s).wait()
        self.push.close()

    def wait(self, timeout_s: float | None = None) -> bool:
        return self.grpc_server.wait_for_termination(timeout_s)


def start_server(host: str = "127.0.0.1", port: int = 0, workers: int = DEFAULT_WORKERS) -> EmulatorServer:
    """Start listening on ``host:port`` (0 = a free port) and return at once; raises OSError if it cannot bind."""
    store = Store()
    push = PushManager(store)
    store.on_subscription_change = push.sync
    server = grpc.server(
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pubsub-grpc"),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    server.add_generic_rpc_handlers((Publisher(store).handler(), Subscriber(store).handler()))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        bound = 0
        reason = str(exc)
    else:
        reason = "address in use or not available"
    if bound == 0:
        store.close()
        push.close()
        raise OSError(f"pubsub emulator cannot listen on {address}: {reason}")
    server.start()
    return EmulatorServer(host, bound, store, push, server)
