"""`make bench`: every benchmark module under tests/bench, one after another, each printing its figures.

`BENCH=auth,agent python -m tests.bench` runs a subset (names are the part after bench_).
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    names = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    chosen = os.environ.get("BENCH")
    if chosen:
        names = [n for n in names if n in {c.strip() for c in chosen.split(",")}]
    from emulators.implementation import choose

    # Which emulators the figures were measured on (NETRA_EMULATORS; Google's where installed, else ours).
    print(f"emulators: {choose().describe()}", flush=True)
    failed = []
    for name in names:
        print(f"\n=== bench_{name} ===", flush=True)
        started = time.monotonic()
        try:
            importlib.import_module(f"tests.bench.bench_{name}").main()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failed.append(name)
            print(f"bench_{name} failed: {type(exc).__name__}: {exc}", flush=True)
        print(f"--- bench_{name}: {time.monotonic() - started:.1f}s", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
