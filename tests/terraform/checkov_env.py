"""checkov in its own virtualenv (.venv-checkov, git-ignored): it pins many packages that must not mix with
the project's. Created on first use by the terraform tests, or ahead of time with
``python -m tests.terraform.checkov_env`` (what `make test` can call on a fresh machine)."""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

from shared.config import REPO_ROOT

# Pinned: a newer checkov brings new checks, and the suite must not turn red without a change here.
CHECKOV_VERSION = "3.3.30"
VENV = REPO_ROOT / ".venv-checkov"
CHECKOV = VENV / "bin" / "checkov"


def _installed_version() -> str | None:
    if not CHECKOV.exists():
        return None
    out = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('checkov'))"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_checkov() -> Path:
    """Path of the checkov executable, installing it first if needed (serialised by a file lock)."""
    VENV.mkdir(parents=True, exist_ok=True)
    with open(VENV / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version() == CHECKOV_VERSION:
            return CHECKOV
        if not (VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
        subprocess.run(
            [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", f"checkov=={CHECKOV_VERSION}"],
            check=True,
            timeout=1200,
        )
    return CHECKOV


if __name__ == "__main__":
    print(ensure_checkov())
