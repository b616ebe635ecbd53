"""checkov's scan of terraform/ starts in the background as soon as the session has collected it, so that its
install (a virtualenv of its own on a fresh clone) and its scan overlap the tests before it instead of adding
about 90 s to the run (checkov is single-threaded and mostly waits on pip; the suite mostly waits on processes).
The provider schemas (an npm download on a fresh clone) are fetched the same way, first.
It runs at low priority, and test_checkov_passes_with_reasoned_suppressions waits for it and makes its
assertions on the result exactly as before. The tree is scanned as it is at the start of the session.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading

import pytest

from shared.config import REPO_ROOT
from tests.terraform.hcl import TERRAFORM_DIR

CHECKOV_TEST = "test_checkov_passes_with_reasoned_suppressions"
INSTALL_TIMEOUT_S = 1200
SCAN_TIMEOUT_S = 600
PREFETCH_SCHEMAS = "from tests.terraform.provider_schema import schema; schema()"


class BackgroundCheckov:
    """One install-and-scan in a thread; ``result()`` waits for it and gives the scan's CompletedProcess."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._result: subprocess.CompletedProcess[str] | None = None
        self._error: BaseException | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name="checkov", daemon=True)

    def start(self) -> BackgroundCheckov:
        self._thread.start()
        return self

    def _popen(self, argv: list[str], cwd: str | None = None) -> subprocess.Popen[str]:
        if self._cancelled:
            raise RuntimeError("cancelled")
        # nice: the tests running meanwhile keep the CPU first; checkov gets what they leave.
        self._proc = subprocess.Popen(
            ["nice", "-n", "10", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd
        )
        return self._proc

    def _run(self) -> None:
        try:
            # The provider schemas of test_every_google_resource_uses_only_attributes_of_the_pinned_provider
            # (npm pack on a fresh clone), fetched first: quick, and that test then finds them cached.
            fetch = self._popen([sys.executable, "-c", PREFETCH_SCHEMAS], cwd=str(REPO_ROOT))
            fetch.communicate(timeout=INSTALL_TIMEOUT_S)  # a failure here is the schema test's to report
            install = self._popen([sys.executable, "-m", "tests.terraform.checkov_env"], cwd=str(REPO_ROOT))
            out, err = install.communicate(timeout=INSTALL_TIMEOUT_S)
            if install.returncode != 0:
                raise RuntimeError(f"installing checkov failed ({install.returncode}): {(out + err)[-3000:]}")
            checkov = out.strip().splitlines()[-1]
            with tempfile.TemporaryDirectory(prefix="checkov-") as cwd:
                argv = [
                    checkov,
                    "-d",
                    str(TERRAFORM_DIR),
                    "--framework",
                    "terraform",
                    "-o",
                    "json",
                    "--skip-download",
                    "--skip-path",
                    ".terraform",
                ]
                scan = self._popen(argv, cwd=cwd)
                out, err = scan.communicate(timeout=SCAN_TIMEOUT_S)
                self._result = subprocess.CompletedProcess(argv, scan.returncode, out, err)
        except BaseException as exc:  # handed to the test, which fails with it
            self._error = exc
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
        finally:
            self._done.set()

    def result(self) -> subprocess.CompletedProcess[str]:
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def cancel(self) -> None:
        self._cancelled = True
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()


_background: BackgroundCheckov | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    global _background
    if _background is None and any(item.name == CHECKOV_TEST for item in session.items):
        _background = BackgroundCheckov().start()


def pytest_sessionfinish() -> None:
    if _background is not None:
        _background.cancel()


@pytest.fixture(scope="session")
def checkov_scan() -> subprocess.CompletedProcess[str]:
    """The scan's CompletedProcess (stdout: checkov's JSON report); started at collection, else now."""
    global _background
    if _background is None:
        _background = BackgroundCheckov().start()
    return _background.result()
