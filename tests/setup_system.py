"""Installs what the tests need beyond pip packages, so `make test` works on a fresh machine.

Idempotent and quick when everything is present. Debian packages need root (CI runs as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

DEBIAN_PACKAGES = {"chromium": "/usr/bin/chromium"}


def _apt_install(packages: list[str]) -> None:
    if os.geteuid() != 0:
        print(f"setup_system: not root, cannot install {packages}; browser tests will report it", file=sys.stderr)
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=True, env=env)


def main() -> int:
    missing = [pkg for pkg, path in DEBIAN_PACKAGES.items() if not os.path.exists(path)]
    if missing and shutil.which("apt-get"):
        _apt_install(missing)
    return 0


if __name__ == "__main__":
    sys.exit(main())
