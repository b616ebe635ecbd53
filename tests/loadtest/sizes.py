"""How big each scenario is. ``default`` fits `make loadtest` in under 10 minutes on 2 cores; ``tiny`` is the
harness check inside `make test`."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class Sizes:
    ks: tuple[int, ...] = (1, 4, 8)  # scenario 1: fresh instances started together
    burst: int = 50  # scenario 1: concurrent requests per instance the moment its port opens
    rounds: int = 1  # scenario 1: repeats of every (target, K), interleaved with the floor (2 does not fit
    # in 10 minutes on two shared cores)
    k1_rounds: int = 3  # scenario 1: repeats of K=1 (cheap; one instance alone is a noisy median)
    give_up_s: float = 60.0  # a request honouring Retry-After stops retrying after this long
    db_delay_s: float = 6.0  # scenario 2: the database starts this long after everything else
    cold_workers: int = 4  # scenario 2: concurrent client loops per service
    settle_s: float = 5.0  # scenario 2: keep sending this long after the last service first succeeded
    storm_clients: int = 1000  # scenario 3
    storm_window_s: float = 1.0  # scenario 3: every client connects within this window
    storm_events: int = 5  # scenario 3: events of the run the clients receive (floor: sent by the server)
    warmup_s: float = 2.0  # scenario 4: requests sent before measuring
    steady_s: float = 8.0  # scenario 4: measured time per target
    steady_concurrency: int = 8  # scenario 4: closed-loop clients per target
    first_event_samples: int = 20  # scenario 4: post -> first WebSocket event, on the warm stack
    settle_max_s: float = 120.0  # longest wait for our own processes to go quiet before a measurement
    prime: bool = True  # start each target once before measuring (checks it, compiles its bytecode); the
    # tiny check skips it to stay fast, a target that fails then shows as failures instead

    def with_overrides(self, **changes: Any) -> Sizes:
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in changes.items() if k in known and v is not None})


PRESETS = {
    "default": Sizes(),
    "tiny": Sizes(
        ks=(1,),
        burst=5,
        rounds=1,
        k1_rounds=1,
        give_up_s=30.0,
        db_delay_s=2.0,
        cold_workers=2,
        settle_s=0.5,
        storm_clients=40,
        storm_window_s=0.5,
        storm_events=3,
        warmup_s=0.3,
        steady_s=1.0,
        steady_concurrency=2,
        first_event_samples=3,
        settle_max_s=1.0,
        prime=False,
    ),
}
