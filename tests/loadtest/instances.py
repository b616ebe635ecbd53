"""Fresh instances of a target: spawn, watch the port, stop them all together."""

from __future__ import annotations

import asyncio
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from emulators.postgres import free_port
from emulators.process import ManagedProcess
from tests.loadtest.client import InstanceGone, call, new_client, wait_port
from tests.loadtest.model import InstanceRecord, RequestSpec, Sample
from tests.loadtest.targets import Target

# Instances under test run at a lower CPU priority than the load generator and the dependencies: on two
# shared cores, eight starting instances would otherwise starve the client that timestamps them (seen as
# 150-200 ms event-loop stalls), and in the cloud clients and databases do not share the instances' CPUs.
# Every target, the floor included, gets the same priority, so the ratios stay like for like.
INSTANCE_NICE = 10


def _niced(argv: list[str]) -> list[str]:
    nice = shutil.which("nice")
    return [nice, "-n", str(INSTANCE_NICE), *argv] if nice else argv


class Instance:
    """One process of a target on its own port, timed against the scenario's epoch."""

    def __init__(
        self,
        target: Target,
        index: int,
        env: dict[str, str],
        epoch: float,
        log_file: Path | None,
        port: int | None = None,
    ) -> None:
        self.target = target
        self.port = port or free_port()
        self.epoch = epoch
        self.proc = ManagedProcess(
            f"{target.name}#{index}",
            _niced(target.argv(self.port)),
            env={**env, **target.env, "PORT": str(self.port)},
            sink=None,
            log_file=log_file,
        )
        self.record = InstanceRecord(target.name, index, self.port, t_spawn=0.0)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def spawn(self) -> Instance:
        self.record.t_spawn = time.monotonic() - self.epoch
        self.proc.start()
        return self

    async def wait_port(self, timeout_s: float) -> bool:
        """Record when the port opened; on failure record the cause with the output tail and return False."""
        try:
            opened = await wait_port("127.0.0.1", self.port, self.proc.alive, timeout_s)
        except (InstanceGone, TimeoutError) as exc:
            self.fail(str(exc))
            return False
        self.record.t_port = opened - self.epoch
        return True

    def first_ok(self, t_abs: float) -> None:
        t = t_abs - self.epoch
        with self._lock:  # the watcher thread and the main loop both report answers
            if self.record.t_first_ok is None or t < self.record.t_first_ok:
                self.record.t_first_ok = t

    def watch_in_thread(self, spec: RequestSpec, give_up_s: float, port_open: Callable[[], None]) -> Sample | None:
        """On its own thread and event loop: wait for the port, say so, send the first request.

        The main loop may be busy firing other instances' bursts (see client.LoopLag); timing the port and
        the first answer here keeps those two figures free of its stalls.
        """
        return asyncio.run(self._watch(spec, give_up_s, port_open))

    async def _watch(self, spec: RequestSpec, give_up_s: float, port_open: Callable[[], None]) -> Sample | None:
        async with new_client(1) as client:  # built before the port opens: it costs CPU
            opened = await self.wait_port(give_up_s)
            port_open()
            if not opened:
                return None
            sample = await call(
                client,
                self.url,
                spec,
                target=self.target.name,
                instance=self.record.index,
                epoch=self.epoch,
                give_up_at=time.monotonic() + give_up_s,
            )
        if sample.ok:
            self.first_ok(self.epoch + sample.t_send + sample.latency_ms / 1000)
        return sample

    def fail(self, reason: str) -> None:
        self.record.error = f"{reason}; output tail: {self.tail()}"

    def tail(self, lines: int = 8) -> str:
        return " | ".join(self.proc.lines[-lines:])[-1500:]


def stop_all(instances: list[Instance], timeout_s: float = 10.0) -> None:
    """SIGTERM every instance first, then wait: stopping eight takes as long as stopping one."""
    for inst in instances:
        inst.proc.signal(signal.SIGTERM)
    for inst in instances:
        inst.proc.stop(timeout_s)


async def stop_all_async(instances: list[Instance]) -> None:
    await asyncio.to_thread(stop_all, instances)
