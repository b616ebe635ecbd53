"""`python -m emulators.firestore --host 127.0.0.1 --port 0` runs the emulator until SIGTERM/SIGINT.

Prints one JSON line ``{"ready": true, "host": ..., "port": N, "kind": ...}`` once a real read succeeds.
``--kind auto`` (the default) follows NETRA_EMULATORS (see emulators.implementation); ``official`` / ``own``
force one. It stops when the process that started it dies (even by SIGKILL), and the emulator with it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from types import FrameType

from emulators.firestore.launcher import EmulatorError, FirestoreEmulator, start_firestore
from emulators.lifeline import ParentWatch


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signum)


def _port(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be an integer 0..65535 (0 = any free port), got {raw!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be an integer 0..65535 (0 = any free port), got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators.firestore", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=0, help="port to listen on; 0 picks a free one")
    parser.add_argument(
        "--kind", choices=("auto", "official", "own"), default="auto", help="which emulator to run (default: auto)"
    )
    args = parser.parse_args(argv)
    watch = ParentWatch()

    # Signals become an exception so that a stop during start-up still cleans up the child.
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    emulator: FirestoreEmulator | None = None
    try:
        emulator = start_firestore(args.host, args.port, kind=args.kind)
        print(
            json.dumps(
                {
                    "ready": True,
                    "host": args.host,
                    "port": emulator.port,
                    "kind": emulator.kind,
                    "startup_s": round(emulator.startup_s, 3),
                }
            ),
            flush=True,
        )
        while emulator.alive():
            if watch.orphaned():
                print("firestore emulator: the process that started it is gone; stopping", file=sys.stderr, flush=True)
                return 0
            time.sleep(0.5)
        print(f"firestore emulator exited with {emulator.process.returncode}", file=sys.stderr, flush=True)
        return 1
    except _Stop:
        return 0
    except EmulatorError as exc:
        print(f"firestore emulator: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        # Ignore further signals while stopping, so a second Ctrl-C cannot leave node behind.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if emulator is not None:
            emulator.stop()


if __name__ == "__main__":
    sys.exit(main())
