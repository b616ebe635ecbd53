"""`python -m emulators.pubsub --host 127.0.0.1 --port 0` runs the Pub/Sub emulator until SIGTERM/SIGINT.

Prints one JSON line ``{"ready": true, "host": ..., "port": N, "kind": ...}`` to stdout once it answers.
``--kind auto`` (the default) follows NETRA_EMULATORS (see emulators.implementation): Google's emulator when
gcloud's component and Java are installed, else the project's own; ``--kind official`` / ``--kind own`` force
one. It also stops when the process that started it dies (even by SIGKILL), and Google's Java emulator dies
with it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from emulators.implementation import OFFICIAL, ImplementationError, resolve
from emulators.lifeline import ParentWatch, StopSignal
from emulators.pubsub import official
from emulators.pubsub.server import start_server


def _port(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be an integer 0..65535 (0 = any free port), got {raw!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be an integer 0..65535 (0 = any free port), got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators.pubsub", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=0, help="port to listen on; 0 picks a free one")
    parser.add_argument(
        "--kind",
        choices=("auto", "official", "own"),
        default="auto",
        help="which emulator to run (default: auto, see above)",
    )
    parser.add_argument("--verbose", action="store_true", help="log push failures and stream errors to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )

    stop = StopSignal()
    watch = ParentWatch()
    try:
        kind = resolve(args.kind)
        if kind == OFFICIAL:
            emulator = official.OfficialEmulator(args.host, args.port)
            port, alive, shutdown = emulator.port, emulator.alive, emulator.stop
        else:
            server = start_server(args.host, args.port)
            port, alive, shutdown = server.port, (lambda: True), server.stop
    except (OSError, official.OfficialEmulatorError, ImplementationError) as exc:
        print(f"pubsub emulator: {exc}", file=sys.stderr, flush=True)
        return 1
    print(json.dumps({"ready": True, "host": args.host, "port": port, "kind": kind}), flush=True)
    try:
        while not stop.wait(0.5):
            if not alive():
                print("pubsub emulator: the official emulator exited", file=sys.stderr, flush=True)
                return 1
            if watch.orphaned():
                print("pubsub emulator: the process that started it is gone; stopping", file=sys.stderr, flush=True)
                return 0
    finally:
        stop.ignore_further()
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
