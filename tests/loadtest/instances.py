"""Fresh instances of a target: spawn, watch the port, stop them all together."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from emulators.postgres import free_port
from emulators.process import ManagedProcess
from tests.loadtest.client import InstanceGone, wait_port
from tests.loadtest.model import InstanceRecord
from tests.loadtest.targets import Target


class Instance:
    """One process of a target on its own port, timed against the scenario's epoch."""

    def __init__(self, target: Target, index: int, env: dict[str, str], epoch: float, log_file: Path | None,
                 port: int | None = None) -> None:
        self.target = target
        self.port = port or free_port()
        self.epoch = epoch
        self.proc = ManagedProcess(f"{target.name}#{index}", target.argv(self.port), env={**env, **target.env,
                                   "PORT": str(self.port)}, sink=None, log_file=log_file)
        self.record = InstanceRecord(target.name, index, self.port, t_spawn=0.0)

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
        if self.record.t_first_ok is None or t < self.record.t_first_ok:
            self.record.t_first_ok = t

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
