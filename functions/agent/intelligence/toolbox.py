"""The analysis tools by name, their argument checks, and the rollups: results precomputed by the rollup job
(functions/agent/rollup_job.py) for the user's current data version are served instead of recomputing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from functions.agent.intelligence import analysis, opportunities, plan
from functions.agent.intelligence.facts import Facts

log = logging.getLogger("agent.intelligence.tools")

ToolFn = Callable[..., dict[str, Any]]

ANALYSIS_TOOLS: dict[str, ToolFn] = {
    "usage_overview": analysis.usage_overview,
    "cost_breakdown": analysis.cost_breakdown,
    "cost_drivers": analysis.cost_drivers,
    "latency_percentiles": analysis.latency_percentiles,
    "caching_opportunity": opportunities.caching_opportunity,
    "duplicate_requests": opportunities.duplicate_requests,
    "batch_opportunity": opportunities.batch_opportunity,
    "model_rightsizing": opportunities.model_rightsizing,
    "output_trimming": opportunities.output_trimming,
    "long_context": opportunities.long_context,
    "plan_segments": plan.plan_segments,
}

# Arguments each tool accepts, with their allowed range: tools are called with model-chosen arguments too.
ARGUMENTS: dict[str, dict[str, tuple[type, Any]]] = {
    "cost_breakdown": {"by": (str, analysis.BREAKDOWN_DIMENSIONS), "limit": (int, (1, 50))},
    "cost_drivers": {"limit": (int, (1, 20))},
    "caching_opportunity": {"ttl_minutes": (int, (1, 60)), "limit": (int, (1, 20))},
    "duplicate_requests": {"limit": (int, (1, 20))},
    "batch_opportunity": {"limit": (int, (1, 20))},
    "model_rightsizing": {"min_requests": (int, (1, 1_000_000)), "limit": (int, (1, 50))},
    "output_trimming": {"reduction_pct": (int, (1, 90)), "limit": (int, (1, 50))},
    "plan_segments": {"ttl_minutes": (int, (1, 60))},
}

# A rollup older than the user's data version is served only when the records added since were live-ingested
# appends and it is at most this old (seconds): the chat then sees new records within about a minute.
LIVE_ROLLUP_MAX_AGE_S = 40

# What the rollup job precomputes and a full analysis runs. Prompt caching comes after the duplicates: its
# windows are computed meanwhile on a second connection (Toolbox.prefetch), after the duplicate groups.
FULL_ANALYSIS: list[tuple[str, dict[str, Any]]] = [
    ("usage_overview", {}),
    ("cost_breakdown", {"by": "model"}),
    ("cost_breakdown", {"by": "feature"}),
    ("cost_breakdown", {"by": "end_user"}),
    ("cost_breakdown", {"by": "day"}),
    ("cost_drivers", {}),
    ("latency_percentiles", {}),
    ("duplicate_requests", {}),
    ("caching_opportunity", {}),
    ("batch_opportunity", {}),
    ("model_rightsizing", {}),
    ("output_trimming", {}),
    ("long_context", {}),
    ("plan_segments", {}),
]


def check_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    if name not in ANALYSIS_TOOLS:
        raise ValueError(f"unknown tool {name!r}")
    allowed = ARGUMENTS.get(name, {})
    for key, value in args.items():
        if key not in allowed:
            raise ValueError(f"{name} takes no argument {key!r}")
        kind, bounds = allowed[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"{name}.{key} must be a {kind.__name__}")
        if kind is int and not bounds[0] <= value <= bounds[1]:
            raise ValueError(f"{name}.{key} must be between {bounds[0]} and {bounds[1]}")
        if kind is str and value not in bounds:
            raise ValueError(f"{name}.{key} must be one of {', '.join(bounds)}")
    return args


def args_key(args: dict[str, Any]) -> str:
    return json.dumps(args, sort_keys=True, separators=(",", ":"))


class Toolbox:
    """Runs the analysis tools for one user, reading fresh rollups first when ``use_rollups``."""

    def __init__(self, db: Any, user_id: str, use_rollups: bool = True) -> None:
        self.db = db
        self.user_id = user_id
        self.facts = Facts(db, user_id)
        self.use_rollups = use_rollups
        self._version: int | None = None
        self._live_floor = 0
        self.rollup_hits = 0

    @property
    def data_version(self) -> int:
        if self._version is None:
            row = self.db.one("SELECT version, live_floor FROM usage_state WHERE user_id = %s", [self.user_id])
            self._version = int(row["version"]) if row else 0
            self._live_floor = int(row["live_floor"]) if row else 0
        return self._version

    def prefetch(self, calls: list[tuple[str, dict[str, Any]]]) -> None:
        """Before running ``calls``: start the prompt-cache windows on a second connection when a call needs
        them and no rollup will answer it (facts.Facts.prefetch_cache_rows)."""
        for name, args in calls:
            if name not in ("caching_opportunity", "plan_segments"):
                continue
            try:
                checked = check_args(name, dict(args))
            except ValueError:
                continue  # the call itself reports it
            if self._rollup(name, checked) is None:
                self.facts.prefetch_cache_rows(checked.get("ttl_minutes", 5))
            return

    def _rollup(self, name: str, args: dict[str, Any]) -> dict[str, Any] | None:
        if not self.use_rollups:
            return None
        version = self.data_version
        # The rollup of the current version; or, while records stream in (live ingestion moves the version
        # but not live_floor), one at most LIVE_ROLLUP_MAX_AGE_S old: it lacks only the newest records,
        # and the worker refreshes it (functions/agent/worker/rollups.py).
        cached = self.db.scalar(
            """SELECT result FROM usage_rollups
                WHERE user_id = %s AND tool = %s AND args_key = %s
                  AND (data_version = %s
                       OR (data_version >= %s AND computed_at > now() - %s * interval '1 second'))
""",
            [self.user_id, name, args_key(args), version, self._live_floor, LIVE_ROLLUP_MAX_AGE_S],
        )
        if cached is None:
            return None
        return cached if isinstance(cached, dict) else json.loads(cached)

    def call(self, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        args = check_args(name, dict(args or {}))
        cached = self._rollup(name, args)
        if cached is not None:
            self.rollup_hits += 1
            return cached
        return ANALYSIS_TOOLS[name](self.facts, **args)

    def compute_and_store(self, name: str, args: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """Recompute a tool and store it as the rollup of the version read before computing (a later upload
        bumps the version, so a result that raced with it is never served)."""
        version = self.data_version
        started = time.perf_counter()
        result = ANALYSIS_TOOLS[name](self.facts, **check_args(name, dict(args)))
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.db.execute(
            """INSERT INTO usage_rollups (user_id, tool, args_key, data_version, result, computed_ms)
               VALUES (%s, %s, %s, %s, %s::jsonb, %s)
               ON CONFLICT (user_id, tool, args_key) DO UPDATE
                  SET data_version = EXCLUDED.data_version, result = EXCLUDED.result,
                      computed_ms = EXCLUDED.computed_ms, computed_at = now()""",
            [self.user_id, name, args_key(args), version, json.dumps(result), round(elapsed_ms)],
        )
        return result, elapsed_ms
