"""The bridge's side of the storm and of the first-event measurement: its auth, frames and run trigger."""

from __future__ import annotations

from tests.loadtest.context import RunContext


def storm_protocol(ctx: RunContext) -> str:
    return "the bridge protocol is not wired into the load test yet"
