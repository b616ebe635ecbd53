"""What precompiled bytecode saves a cold start (`BENCH=bytecode python -m tests.bench`, part of `make bench`).

Three copies of shared/ and functions/: source only (what a cold instance compiled before the deployed artifacts
carried bytecode: PYTHONDONTWRITEBYTECODE=1 means nothing is ever written back), checked-hash pycs (what the
Cloud Run functions build now leaves, modules/cloud_function sets SOURCE_DATE_EPOCH) and unchecked-hash pycs
(the app image's Dockerfile). For each entry point, fresh interpreters run ``import <entry module>`` from each
copy, interleaved, BENCH_BYTECODE_ROUNDS rounds; medians of wall time and of CPU time (user + sys, steadier
than wall time on a loaded machine). Dependencies have their pycs in the venv in every case, as in the cloud.
"""

from __future__ import annotations

import compileall
import os
import py_compile
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shared.config import REPO_ROOT
from tests.bench.bench_imports import ENV

ROUNDS = int(os.environ.get("BENCH_BYTECODE_ROUNDS", "7"))
ENTRY_POINTS = ["functions.auth.main", "functions.agent.main", "functions.ws_bridge.main"]
MODES: dict[str, py_compile.PycInvalidationMode | None] = {
    "source only": None,
    "checked-hash pycs": py_compile.PycInvalidationMode.CHECKED_HASH,
    "unchecked-hash pycs": py_compile.PycInvalidationMode.UNCHECKED_HASH,
}


def build_tree(root: Path, mode: py_compile.PycInvalidationMode | None) -> None:
    for d in ("shared", "functions"):
        shutil.copytree(REPO_ROOT / d, root / d, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    if mode is not None:
        assert compileall.compile_dir(str(root), quiet=1, invalidation_mode=mode)


def timed_import(root: Path, module: str, local_dir: str) -> tuple[float, float]:
    """(wall ms, CPU ms) of a fresh interpreter importing ``module`` from ``root``."""
    env = {**os.environ, **ENV, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(root), "NETRA_LOCAL_DIR": local_dir}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], cwd=root, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall * 1000, cpu * 1000


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-bytecode-"))
    try:
        trees = {}
        for name, mode in MODES.items():
            trees[name] = work / name.replace(" ", "-")
            build_tree(trees[name], mode)
        local_dir = str(work / "local")
        for module in ENTRY_POINTS:  # one import outside the samples: writes the local keyset, warms the page cache
            timed_import(trees["source only"], module, local_dir)
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {(m, n): [] for m in ENTRY_POINTS for n in trees}
        for _ in range(ROUNDS):
            for module in ENTRY_POINTS:
                for name, root in trees.items():
                    samples[(module, name)].append(timed_import(root, module, local_dir))
        print(f"load average before the report: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
        for module in ENTRY_POINTS:
            base_wall = statistics.median(s[0] for s in samples[(module, "source only")])
            base_cpu = statistics.median(s[1] for s in samples[(module, "source only")])
            cells = []
            for name in trees:
                wall = statistics.median(s[0] for s in samples[(module, name)])
                cpu = statistics.median(s[1] for s in samples[(module, name)])
                cells.append(
                    f"{name} {wall:.0f} ms wall ({wall - base_wall:+.0f}), {cpu:.0f} ms CPU ({cpu - base_cpu:+.0f})"
                )
            print(f"interpreter + import {module}, median of {ROUNDS}: " + "; ".join(cells), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
