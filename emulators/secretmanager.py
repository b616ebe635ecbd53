"""A minimal Secret Manager emulator (AccessSecretVersion only) for tests and local runs.

Google ships no Secret Manager emulator. This one lets the real google-cloud-secret-manager client talk
gRPC to a local process, so the rotation reader and the slow/unavailable behaviour (scenario 26) are
tested over a real client and a real connection. Behaviour knobs (latency, failures) are for tests.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from dataclasses import dataclass, field

import grpc


@dataclass
class Behaviour:
    latency_s: float = 0.0
    fail_next: int = 0  # answer UNAVAILABLE this many times
    deny: bool = False  # answer PERMISSION_DENIED
    calls: int = 0


@dataclass
class SecretManagerEmulator:
    server: grpc.Server
    port: int
    secrets: dict[str, list[str]] = field(default_factory=dict)  # name -> versions, oldest first
    behaviour: Behaviour = field(default_factory=Behaviour)

    def add_version(self, project: str, secret: str, value: str) -> None:
        self.secrets.setdefault(f"projects/{project}/secrets/{secret}", []).append(value)

    def stop(self) -> None:
        self.server.stop(0)


def start_secret_manager(host: str = "127.0.0.1", port: int = 0) -> SecretManagerEmulator:
    from google.cloud.secretmanager_v1 import types

    lock = threading.Lock()
    holder: dict[str, SecretManagerEmulator] = {}

    def access(
        request: types.AccessSecretVersionRequest, context: grpc.ServicerContext
    ) -> types.AccessSecretVersionResponse:
        emu = holder["emu"]
        with lock:
            emu.behaviour.calls += 1
            failing = emu.behaviour.fail_next > 0
            if failing:
                emu.behaviour.fail_next -= 1
        time.sleep(emu.behaviour.latency_s)
        if emu.behaviour.deny:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "permission denied on secret")
        if failing:
            context.abort(grpc.StatusCode.UNAVAILABLE, "secret manager unavailable")
        name, _, version = request.name.partition("/versions/")
        versions = emu.secrets.get(name)
        if not versions:
            context.abort(grpc.StatusCode.NOT_FOUND, f"secret {name} not found")
        index = len(versions) if version == "latest" else int(version)
        if not 1 <= index <= len(versions):
            context.abort(grpc.StatusCode.NOT_FOUND, f"version {version} not found")
        return types.AccessSecretVersionResponse(
            name=f"{name}/versions/{index}",
            payload=types.SecretPayload(data=versions[index - 1].encode()),
        )

    handler = grpc.method_handlers_generic_handler(
        "google.cloud.secretmanager.v1.SecretManagerService",
        {
            "AccessSecretVersion": grpc.unary_unary_rpc_method_handler(
                access,
                request_deserializer=types.AccessSecretVersionRequest.deserialize,
                response_serializer=types.AccessSecretVersionResponse.serialize,
            ),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    holder["emu"] = SecretManagerEmulator(server, bound)
    return holder["emu"]
