"""Which pipeline the worker runs: AGENT_PIPELINE=auto picks the optimization pipeline
(``functions.agent.intelligence.pipeline:run``) when that module exists, else the minimal one.
Imported lazily, on the first run, so the worker's cold start does not pay for it.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading

from functions.agent.pipeline_api import Pipeline

INTELLIGENCE = "functions.agent.intelligence.pipeline:run"
MINIMAL = "functions.agent.worker.minimal_pipeline:run"

_cache: dict[str, Pipeline] = {}
_lock = threading.Lock()


def resolve(spec: str) -> str:
    if spec == "minimal":
        return MINIMAL
    if spec == "auto":
        try:
            present = importlib.util.find_spec(INTELLIGENCE.split(":")[0]) is not None
        except ModuleNotFoundError:  # the intelligence package itself is absent
            present = False
        return INTELLIGENCE if present else MINIMAL
    return spec


def load_pipeline(spec: str) -> tuple[str, Pipeline]:
    """(resolved "module:function", the callable). An import error of a present module is raised, not hidden."""
    resolved = resolve(spec)
    with _lock:
        if resolved not in _cache:
            module_name, _, func = resolved.partition(":")
            _cache[resolved] = getattr(importlib.import_module(module_name), func)
        return resolved, _cache[resolved]
