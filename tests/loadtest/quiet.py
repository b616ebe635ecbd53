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
from urllib.parse import urlparse

import psutil

from tests.loadtest.progress import Progress

QUIET_CORE_PERCENT = 30.0  # of one core, over half a second, summed over our process tree
MAX_WAIT_S = 120.0


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
        conn = pg8000.dbapi.connect(user=url.username, password=url.password, host=url.hostname,
                                    port=url.port or 5432, database=url.path.lstrip("/"), timeout=5)
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


async def settle(progress: Progress, what: str, database_url: str | None = None,
                 max_wait_s: float = MAX_WAIT_S) -> float:
    """Seconds waited; after ``max_wait_s`` it goes on and says so (the figures then carry the noise)."""
    started = time.monotonic()
    while True:
        backlog = await asyncio.to_thread(agent_backlog, database_url)
        busy = await asyncio.to_thread(tree_cpu_percent)
        waited = time.monotonic() - started
        if backlog == 0 and busy < QUIET_CORE_PERCENT:
            return waited
        if waited > max_wait_s:
            progress.step(f"{what}: still {backlog} agent run(s) pending and {busy:.0f}% of a core busy after "
                          f"{waited:.0f}s; measuring anyway")
            return waited
        progress.status(f"{what}: waiting for quiet ({backlog} agent run(s) pending, {busy:.0f}% of a core)")
