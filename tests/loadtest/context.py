"""What every scenario gets from the runner."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.loadtest.progress import Progress
from tests.loadtest.sizes import Sizes
from tests.loadtest.targets import MixContext, Target


@dataclass
class RunContext:
    out: Path
    sizes: Sizes
    progress: Progress
    env: dict[str, str] = field(default_factory=dict)  # environment of a fresh instance on the warm stack
    mix: MixContext = field(default_factory=MixContext)
    http_targets: list[Target] = field(default_factory=list)  # available and primed, the floor first
    ws_targets: list[Target] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)  # target -> why it is not measured
    stack_urls: dict[str, str] = field(default_factory=dict)  # the warm stack's own instances
    remote: dict[str, Any] = field(default_factory=dict)  # scenario 5 settings

    @property
    def logs(self) -> Path:
        path = self.out / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"


@contextlib.asynccontextmanager
async def ticking(progress: Progress, line: Callable[[], str], every_s: float = 0.5) -> AsyncIterator[None]:
    """Refresh a progress status line while the body runs."""

    async def tick() -> None:
        while True:
            progress.status(line())
            await asyncio.sleep(every_s)

    task = asyncio.create_task(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
