"""`python -m emulators up [--only a,b]` runs the local stack; `python -m emulators status` checks it."""

from __future__ import annotations

import argparse
import sys

from emulators.implementation import ImplementationError
from emulators.lifeline import StopSignal
from emulators.stack import ALL_NAMES, Stack, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the whole system (Ctrl-C stops everything)")
    up.add_argument("--only", help=f"comma-separated subset of: {', '.join(ALL_NAMES)}")
    sub.add_parser("status", help="check every running component through the discovery files")
    args = parser.parse_args(argv)
    if args.command == "status":
        return status()

    only = None
    if args.only:
        only = {n.strip() for n in args.only.split(",") if n.strip()}
        unknown = only - set(ALL_NAMES)
        if unknown:
            parser.error(f"unknown component(s) {', '.join(sorted(unknown))}; choose from {', '.join(ALL_NAMES)}")
    try:
        stack = Stack(only)
    except ImplementationError as exc:
        print(f"emulators: {exc}", file=sys.stderr)
        return 2
    stop = StopSignal()
    try:
        stack.up()
        while not stop.wait(1):
            dead = [name for name, proc in stack.procs.items() if not proc.alive()]
            if dead:
                stack.say(f"{', '.join(dead)} exited; stopping the stack")
                return 1
        return 0
    except Exception as exc:
        stack.say(f"start failed: {exc}")
        return 1
    finally:
        stack.down()


if __name__ == "__main__":
    sys.exit(main())
