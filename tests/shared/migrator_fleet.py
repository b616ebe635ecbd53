"""COUNT copies of the migration job released at the same instant (scenarios 1 and 3).

    python -m tests.shared.migrator_fleet COUNT LOG_DIR      # DATABASE_URL etc. from the environment

Started one by one, copies of ``python -m shared.db.migrate`` are staggered by their import time (hundreds of
milliseconds each here), so often the first has finished before the last connects and a missing lock goes
unnoticed. This process imports everything once, forks COUNT children and holds them at a start barrier:
each child reports on a pipe that it is waiting, and once all have, the parent closes the pipe they wait on,
so all of them connect at once. Each child then runs the module exactly as ``python -m shared.db.migrate``
does (runpy, as ``__main__``), with its output in LOG_DIR/NN.log. Forking also keeps 32 copies cheap on a
loaded machine. Prints ``{"exit_codes": [...]}`` on stdout.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

# What the job imports before its first connection, so that the children leave the barrier warm (not the
# module itself: runpy runs it afresh as __main__, as `python -m` does).
import pg8000.dbapi  # noqa: F401

import shared.config  # noqa: F401
import shared.db.connect  # noqa: F401
import shared.db.database  # noqa: F401
import shared.logging  # noqa: F401


def _child(index: int, log_dir: Path, ready_w: int, go_r: int) -> int:
    log = os.open(log_dir / f"{index:02d}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.write(ready_w, b"r")
    os.read(go_r, 1)  # returns b"" when the parent closes the write end: the start signal
    sys.argv = ["shared.db.migrate"]
    try:
        runpy.run_module("shared.db.migrate", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # reported in the child's log, like an uncaught error in `python -m`
        print(f"uncaught: {exc!r}", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def main(count: int, log_dir: Path) -> list[int]:
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pids = []
    for index in range(count):
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            os.close(go_w)
            os._exit(_child(index, log_dir, ready_w, go_r))
        pids.append(pid)
    os.close(ready_w)
    os.close(go_r)
    waiting = 0
    while waiting < count:
        chunk = os.read(ready_r, count)
        if not chunk:  # every child died before the barrier
            break
        waiting += len(chunk)
    os.close(go_w)  # release them all
    return [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]


if __name__ == "__main__":
    codes = main(int(sys.argv[1]), Path(sys.argv[2]))
    print(json.dumps({"exit_codes": codes}))
