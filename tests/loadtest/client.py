"""The load generator's client side: a fast TCP port poll and a request that honours Retry-After.

asyncio + httpx: one event loop drives every burst, so hundreds of requests are in flight at once without
a thread each.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable

import httpx

from tests.loadtest.model import RequestSpec, Sample

RETRYABLE = frozenset({429, 503})
MAX_RETRY_SLEEP_S = 10.0


class InstanceGone(RuntimeError):
    """The process exited before its port opened."""


async def wait_port(
    host: str, port: int, alive: Callable[[], bool], timeout_s: float, interval_s: float = 0.005
) -> float:
    """Poll until ``host:port`` accepts a TCP connection; return the monotonic time it did.

    A refused connect costs microseconds on loopback, so a 5 ms poll finds the moment the listen socket
    exists without loading the CPU that the starting instance needs.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        except (OSError, TimeoutError):
            if not alive():
                raise InstanceGone(f"process exited before port {port} opened") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"port {port} not open after {timeout_s:g}s") from None
            await asyncio.sleep(interval_s)
            continue
        opened = time.monotonic()
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return opened


def describe_error(response: httpx.Response) -> str:
    """``HTTP 500 code: message`` from the shared error body, or the start of whatever came back."""
    try:
        error = response.json().get("error", {})
        return f"HTTP {response.status_code} {error.get('code', '?')}: {error.get('message', '')}"[:300]
    except Exception:
        return f"HTTP {response.status_code}: {response.text[:200]!r}"


def retry_after_s(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def simulated_client_ip() -> str:
    """A client address from 10/8 for ``X-Forwarded-For``, as Google's front end sets it.

    Locally every request comes from 127.0.0.1; services that key per-client state on the address (auth's
    rate limit buckets) would otherwise see one client hammering one row instead of many users.
    """
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


async def call(
    client: httpx.AsyncClient,
    base_url: str,
    spec: RequestSpec,
    *,
    target: str,
    instance: int,
    epoch: float,
    give_up_at: float,
    honour_retry_after: bool = True,
    simulate_client: bool = True,
) -> Sample:
    """Send ``spec`` and follow Retry-After on 503/429 until ``give_up_at`` (monotonic).

    Never raises: a transport error or an unexpected status is a failed Sample carrying its cause. With
    ``simulate_client`` (local runs) the request carries its own client address; never against deployed URLs.
    """
    headers = {**spec.headers, "X-Forwarded-For": simulated_client_ip()} if simulate_client else spec.headers
    payload = spec.payload()
    started = time.monotonic()
    attempts = 0
    first_ms: float | None = None
    status: int | None = None
    cause: str | None = None
    while True:
        attempts += 1
        attempt_start = time.monotonic()
        try:
            response = await client.request(spec.method, base_url + spec.path, json=payload, headers=headers)
        except httpx.HTTPError as exc:
            status, cause = None, f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__
            if first_ms is None:
                first_ms = (time.monotonic() - attempt_start) * 1000
            break
        if first_ms is None:
            first_ms = (time.monotonic() - attempt_start) * 1000
        status = response.status_code
        if status in spec.ok:
            cause = None
            break
        cause = describe_error(response)
        wait = retry_after_s(response) if status in RETRYABLE else None
        if not honour_retry_after or wait is None:
            if status in RETRYABLE:
                cause += " (no usable Retry-After)"
            break
        wait = min(wait, MAX_RETRY_SLEEP_S)
        if time.monotonic() + wait > give_up_at:
            cause += f" (still failing after {attempts} attempt(s) when the scenario's time ran out)"
            break
        await asyncio.sleep(wait)
    done = time.monotonic()
    return Sample(
        target=target,
        instance=instance,
        request=spec.name,
        t_send=started - epoch,
        latency_ms=(done - started) * 1000,
        first_attempt_ms=first_ms or 0.0,
        status=status,
        attempts=attempts,
        ok=cause is None,
        cause=cause,
    )


_SSL = ssl.create_default_context()  # built once: each client building its own costs ~13 ms of CPU


def new_client(max_connections: int, timeout_s: float = 30.0) -> httpx.AsyncClient:
    """A client that lets every request of a burst have its own connection, as separate users would."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx.AsyncClient(
        limits=limits, timeout=httpx.Timeout(timeout_s, connect=10.0), trust_env=False, verify=_SSL
    )


class LoopLag:
    """The longest stall of this event loop while measuring: the precision of the client-side timestamps.

    A burst of hundreds of requests keeps the loop busy for a few hundred ms (about 1 ms of CPU per request
    through httpx); the figure is reported next to the results so nobody reads more precision into them.
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.max_ms = 0.0

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[LoopLag]:
        running = True

        async def watch() -> None:
            last = time.monotonic()
            while running:
                await asyncio.sleep(self.interval_s)
                now = time.monotonic()
                self.max_ms = max(self.max_ms, (now - last - self.interval_s) * 1000)
                last = now

        task = asyncio.create_task(watch())
        try:
            yield self
        finally:
            running = False
            await task


class SetupFailed(RuntimeError):
    """A request the scenario needs before measuring (sign-in, a thread) did not succeed."""


async def request_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    give_up_at: float,
    json: dict[str, object] | None = None,
    headers: dict[str, str] | None = None,
    connect_retry: bool = False,
) -> dict[str, object]:
    """One setup request honouring Retry-After; with ``connect_retry`` a refused connection is retried too
    (the cold stack asks before the service is listening)."""
    while True:
        try:
            response = await client.request(method, url, json=json, headers=headers)
        except httpx.ConnectError:
            if not connect_retry or time.monotonic() > give_up_at:
                raise
            await asyncio.sleep(0.05)
            continue
        if response.status_code < 300:
            return response.json()
        wait = retry_after_s(response) if response.status_code in RETRYABLE else None
        if wait is None or time.monotonic() + wait > give_up_at:
            raise SetupFailed(f"{method} {url.split('//', 1)[-1].split('/', 1)[-1]}: {describe_error(response)}")
        await asyncio.sleep(min(wait, MAX_RETRY_SLEEP_S))
