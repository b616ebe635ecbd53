"""Wait for our own processes to go quiet between measurements.

Posting messages queues agent runs that the worker executes one after another after the burst (the local
push subscription delivers about five a second); on two cores that work would land on the next measurement,
often the floor's, and a storm's runs would queue behind it. So each measurement starts once the agent
backlog is empty and the CPU used by this process tree (the stack, the instances, the load generator) has
dropped. Other people's load on a shared machine is not ours to wait for; it is noise in every figure.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlparse

import psutil

from tests.loadtest.progress import Progress

QUIET_CORE_PERCENT = 30.0  # of one core, over half a second, summed over our process tree
MAX_WAIT_S = 120.0
STALL_S = 10.0


def tree_cpu_percent(interval_s: float = 0.5) -> float:
    """CPU used by this process and all its descendants over ``interval_s``, in % of one core."""

    def snapshot() -> dict[int, float]:
        procs = [psutil.Process(), *psutil.Process().children(recursive=True)]
        times = {}
        for proc in procs:
            try:
                cpu = proc.cpu_times()
                times[proc.pid] = cpu.user + cpu.system + cpu.children_user + cpu.children_system
            except psutil.Error:
                continue
        return times

    before = snapshot()
    time.sleep(interval_s)
    after = snapshot()
    used = sum(after[pid] - before[pid] for pid in after if pid in before)
    return max(0.0, used / interval_s * 100)


def agent_backlog(database_url: str | None) -> int:
    """Runs queued or running; 0 when there is no database or no runs table."""
    if not database_url:
        return 0
    import pg8000.dbapi

    url = urlparse(database_url)
    try:
        conn = pg8000.dbapi.connect(
            user=url.username,
            password=url.password,
            host=url.hostname,
            port=url.port or 5432,
            database=url.path.lstrip("/"),
            timeout=5,
        )
    except Exception:
        return 0
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT count(*) FROM runs WHERE status IN ('queued', 'running')")
        return int(cursor.fetchone()[0])
    except Exception:
        return 0
    finally:
        conn.close()


@dataclass
class Quiet:
    waited_s: float
    pending_runs: int  # agent runs still queued or running when measuring began
    stalled: bool  # the backlog stopped shrinking: runs that never reach the worker (reported, not waited for)


# Runs found stuck once, per database: later waits do not pay STALL_S again for the same runs.
_known_stuck: dict[str, int] = {}


def configure(max_wait_s: float) -> None:
    """The run's bound on every wait (sizes.settle_max_s: the tiny harness check must stay fast)."""
    global MAX_WAIT_S
    MAX_WAIT_S = max_wait_s


async def settle(
    progress: Progress, what: str, database_url: str | None = None, max_wait_s: float | None = None
) -> Quiet:
    """Wait for an empty agent backlog and a quiet process tree, at most ``max_wait_s``; a backlog that has
    not moved for STALL_S is stuck, not busy, and is not waited for (then or later)."""
    started = time.monotonic()
    max_wait_s = min(max_wait_s or MAX_WAIT_S, MAX_WAIT_S)
    last_backlog, last_change = -1, started
    key = database_url or ""
    while True:
        backlog = await asyncio.to_thread(agent_backlog, database_url)
        busy = await asyncio.to_thread(tree_cpu_percent)
        now = time.monotonic()
        if backlog != last_backlog:
            last_backlog, last_change = backlog, now
        known = backlog > 0 and backlog <= _known_stuck.get(key, 0)
        stalled = backlog > 0 and (known or now - last_change > STALL_S)
        if (backlog == 0 or stalled) and busy < QUIET_CORE_PERCENT:
            if stalled and not known:
                _known_stuck[key] = backlog
                progress.step(f"{what}: {backlog} agent run(s) stuck as queued/running; measuring anyway")
            return Quiet(round(now - started, 1), backlog, stalled)
        if now - started > max_wait_s:
            progress.step(
                f"{what}: still {backlog} agent run(s) pending and {busy:.0f}% of a core busy after "
                f"{now - started:.0f}s; measuring anyway"
            )
            return Quiet(round(now - started, 1), backlog, False)
        progress.status(f"{what}: waiting for quiet ({backlog} agent run(s) pending, {busy:.0f}% of a core)")
