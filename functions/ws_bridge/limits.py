"""Per-instance capacity: file descriptors (scenario 28) and client frame rate."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class FdLimit:
    soft_before: int
    soft: int
    hard: int
    open_at_start: int
    max_connections: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux: a conservative guess
        return 64


def raise_fd_limit(configured_max: int | None) -> FdLimit:
    """Each socket is a file descriptor: raise the soft limit to the hard one where allowed, and derive how
    many connections this instance accepts before it refuses new ones with 1013 (clearly, instead of failing
    on EMFILE). A tenth of the limit (at least 32) stays free for the database pool, gRPC and HTTP clients."""
    soft_before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = soft_before
    if hard == resource.RLIM_INFINITY:
        hard_cap = 1_048_576
    else:
        hard_cap = hard
    if soft == resource.RLIM_INFINITY or soft < hard_cap:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard_cap, hard))
            soft = hard_cap
        except (ValueError, OSError):
            pass  # not allowed here: keep the soft limit, the capacity below reflects it
    in_use = open_fds()
    reserve = max(32, soft // 10)
    capacity = max(0, soft - in_use - reserve)
    if configured_max is not None:
        capacity = min(capacity, configured_max)
    return FdLimit(soft_before, soft, hard, in_use, capacity)


class TokenBucket:
    """``per_minute`` frames per minute with bursts up to the same number: two floats per connection."""

    __slots__ = ("capacity", "rate", "tokens", "stamp")

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
