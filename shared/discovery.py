"""Local service discovery: each process writes ``.service_discovery/<name>.json`` with its URL.

Only for local runs and tests; in the cloud every URL is configuration. Lookups retry within a bound
because a peer's file may appear a moment after the caller starts (scenario 12).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from shared.config import REPO_ROOT
from shared.errors import NetraError


class DiscoveryTimeout(NetraError, LookupError):
    pass


def discovery_dir() -> Path:
    return Path(os.environ.get("NETRA_DISCOVERY_DIR", REPO_ROOT / ".service_discovery"))


def write_entry(name: str, host: str, port: int, pid: int | None = None, scheme: str = "http") -> Path:
    directory = discovery_dir()
    directory.mkdir(parents=True, exist_ok=True)
    entry = {
        "name": name,
        "host": host,
        "port": port,
        "url": f"{scheme}://{host}:{port}",
        "pid": pid if pid is not None else os.getpid(),
    }
    path = directory / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(entry))
    tmp.replace(path)  # atomic: a reader never sees half a file
    return path


def read_entry(name: str) -> dict[str, Any] | None:
    path = discovery_dir() / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def lookup_url(name: str, timeout_s: float = 10.0, interval_s: float = 0.1) -> str:
    """The peer's base URL, waiting up to ``timeout_s`` for its discovery file."""
    deadline = time.monotonic() + timeout_s
    while True:
        entry = read_entry(name)
        if entry and entry.get("url"):
            return str(entry["url"])
        if time.monotonic() >= deadline:
            raise DiscoveryTimeout(f"no discovery file for {name!r} in {discovery_dir()} after {timeout_s:g}s")
        time.sleep(interval_s)


def remove_entry(name: str) -> None:
    try:
        (discovery_dir() / f"{name}.json").unlink()
    except FileNotFoundError:
        pass
