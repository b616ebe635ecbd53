"""Import time of each function's main.py and of the shared package (`python -X importtime`).

Each figure is the median of several fresh interpreters, printed next to the same-run baseline of a bare
`import functions_framework` (what an empty function pays), so it reads as a ratio on a noisy machine.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from shared.config import REPO_ROOT

RUNS = int(os.environ.get("BENCH_IMPORT_RUNS", "5"))

TARGETS = {
    "baseline: functions_framework": "import functions_framework",
    "shared (config, http, startup, db, logging)": "import shared.config, shared.http, shared.startup, shared.db, "
    "shared.logging, shared.service",
    "shared.tokens (verifier)": "import shared.tokens.verify",
    "functions/auth/main.py": "import functions.auth.main",
    "functions/agent/main.py": "import functions.agent.main",
    "functions/ws_bridge/main.py": "import functions.ws_bridge.main",
}

# Importing a service's main.py validates its configuration, so give it a valid local one.
ENV = {
    "NETRA_ENV": "test",
    "DATABASE_URL": "postgresql://netra:x@127.0.0.1:9/netra",
    "PUBSUB_EMULATOR_HOST": "127.0.0.1:9",
    "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9",
    "AUTH_JWKS_URL": "http://127.0.0.1:9/.well-known/jwks.json",
    "DEV_LOGIN_ENABLED": "true",
    "NETRA_DISCOVERY_DIR": str(Path(tempfile.gettempdir()) / "netra-bench-discovery"),  # nothing is written there
}


def import_ms(statement: str) -> tuple[float | None, str]:
    """Total import time in ms (sum of top-level cumulative times) of one fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        cwd=REPO_ROOT,
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        return None, result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"
    total = 0
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match.group(2)) == 1:  # top-level imports only: their cumulative covers the rest
            total += int(match.group(1))
    return total / 1000, ""


def heaviest(statement: str, n: int = 5) -> list[tuple[str, float]]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        cwd=REPO_ROOT,
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=120,
    )
    rows = []
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match.group(2)) == 1:
            rows.append((match.group(3), int(match.group(1)) / 1000))
    return sorted(rows, key=lambda r: -r[1])[:n]


def main() -> dict[str, dict[str, float | None]]:
    results: dict[str, dict[str, float | None]] = {}
    baseline = None
    print(f"{'target':<46}{'median ms':>10}{'x baseline':>12}   heaviest top-level imports")
    for name, statement in TARGETS.items():
        samples = []
        error = ""
        for _ in range(RUNS):
            ms, error = import_ms(statement)
            if ms is None:
                break
            samples.append(ms)
        if not samples:
            print(f"{name:<46}{'n/a':>10}{'':>12}   ({error})")
            results[name] = {"median_ms": None, "ratio": None}
            continue
        median = statistics.median(samples)
        if baseline is None:
            baseline = median
        ratio = median / baseline if baseline else None
        top = ", ".join(f"{m} {ms:.0f}" for m, ms in heaviest(statement, 3))
        print(f"{name:<46}{median:>10.1f}{ratio:>12.2f}   {top}")
        results[name] = {"median_ms": round(median, 1), "ratio": round(ratio, 2) if ratio else None}
    Path(REPO_ROOT / "docs").mkdir(exist_ok=True)
    return results


if __name__ == "__main__":
    main()
