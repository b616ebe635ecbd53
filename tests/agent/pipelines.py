"""Pipelines for fault tests, chosen with AGENT_PIPELINE=tests.agent.pipelines:scripted.

The user's message picks the behaviour: ``hang`` blocks in a tool past any time budget, ``crash`` raises, a
message ``swallow`` catches everything (the platform's abort must still get through), anything else runs the
platform's minimal pipeline.
"""

from __future__ import annotations

import threading

from functions.agent.pipeline_api import FinalAnswer, RunContext
from functions.agent.worker import minimal_pipeline

_never = threading.Event()


def scripted(ctx: RunContext) -> FinalAnswer:
    if ctx.message == "hang":
        ctx.tool("tester", "hang", {}, lambda: {"done": _never.wait(3600)})
    if ctx.message == "crash":
        ctx.emit("agent_thinking", "tester", {"thought": "about to fail"})
        raise KeyError("deliberate failure")
    if ctx.message == "swallow":
        while True:
            try:
                ctx.check_cancelled()
                ctx.emit("agent_thinking", "tester", {"thought": "still going"})
                _never.wait(0.05)
            except Exception:  # noqa: S112 - a careless pipeline; the time budget must still end it
                continue
    return minimal_pipeline.run(ctx)
