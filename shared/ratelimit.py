"""Fixed-window rate limits per client, counted in Firestore so every instance sees the same count.

One Firestore document per (action, client, window): ``rate_limits/{action}-{client digest}-{window}`` with
``count`` (atomically incremented; the commit returns the new value, so a hit is one round trip) and
``expires_at`` (TTL policy deletes old windows). Client keys are hashed: document ids never hold raw IPs
or attacker-chosen characters.

Two ways to count:
- ``hit(rule, key)``: the shared count is incremented before answering (exact across instances). For
  endpoints that talk to Firestore anyway (login, token, refresh).
- ``hit(rule, key, deferred=True)``: counted locally at once and added to the shared count by a background
  thread every ``sync_interval_s``; the decision uses the last shared total plus the local hits not yet
  flushed. The request path never imports a Google client library (cold start of /auth/validate); other
  instances' hits are seen one sync later.

If Firestore is unreachable the limiter falls back to counting in this instance only (logged), rather
than failing the request: a limit is a guard, not a dependency.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from shared.errors import ApiError

log = logging.getLogger("ratelimit")


@dataclass(frozen=True)
class Rule:
    action: str  # short name used in bucket ids and messages, e.g. "login"
    limit: int  # hits allowed per window
    window_s: int = 60


class RateLimited(ApiError):
    def __init__(self, action: str, retry_after: int) -> None:
        super().__init__(
            429,
            "rate_limited",
            f"too many {action} requests from this client; retry in {retry_after} s",
            {"action": action, "retry_after_s": retry_after},
            {"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


class CounterStore(Protocol):
    def increment(self, bucket: str, amount: int, expires_at: datetime) -> int:
        """Add ``amount`` to the bucket's count and return the new total."""
        ...


class FirestoreCounterStore:
    """Counters in the ``rate_limits`` collection (name through ``collection_name``)."""

    def __init__(self, collection: str = "rate_limits", timeout_s: float = 2.0) -> None:
        self.collection = collection
        self.timeout_s = timeout_s

    def increment(self, bucket: str, amount: int, expires_at: datetime) -> int:
        from shared.firestore import bounded, collection_name, get_client, increment

        ref = get_client().collection(collection_name(self.collection)).document(bucket)
        # One write: merge keeps the count, Increment is applied server-side and reported back.
        result = ref.set({"count": increment(amount), "expires_at": expires_at}, merge=True, **bounded(self.timeout_s))
        values = list(getattr(result, "transform_results", []) or [])
        if not values:
            raise RuntimeError("Firestore did not return the incremented count")
        value = values[0]
        return int(value.integer_value or value.double_value)


def client_ip(headers: Any, remote_addr: str | None, trusted_proxy_hops: int) -> str:
    """The client address as seen by the outermost trusted proxy.

    ``X-Forwarded-For`` is "what the client sent, then one entry per proxy"; only the entries appended by
    our own proxies can be trusted. With ``trusted_proxy_hops`` = 1 (Cloud Run's front end) the last entry
    is the client; 2 with an external load balancer in front; 0 ignores the header (direct connections).
    """
    if trusted_proxy_hops > 0:
        hops = [h.strip() for h in (headers.get("X-Forwarded-For") or "").split(",") if h.strip()]
        if len(hops) >= trusted_proxy_hops:
            return hops[-trusted_proxy_hops]
        if hops:
            return hops[0]
    return remote_addr or "unknown"


@dataclass
class _Bucket:
    window_end: float
    shared_total: int = 0  # the shared count after this instance's last flush
    pending: int = 0  # local hits not yet added to the shared count
    local_only: int = 0  # hits counted while Firestore was unreachable


class RateLimiter:
    def __init__(
        self,
        store: CounterStore | Callable[[], CounterStore] | None = None,
        sync_interval_s: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store_arg = store
        self._store: CounterStore | None = None
        self.sync_interval_s = sync_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._flusher: threading.Thread | None = None
        self._wake = threading.Event()
        self._store_failing = False

    def store(self) -> CounterStore:
        if self._store is None:
            arg = self._store_arg
            if arg is None:
                self._store = FirestoreCounterStore()
            elif callable(arg) and not hasattr(arg, "increment"):
                self._store = arg()
            else:
                self._store = arg  # type: ignore[assignment]
        return self._store

    def _bucket_id(self, rule: Rule, key: str, now: float) -> tuple[str, float]:
        window = int(now // rule.window_s)
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        return f"{rule.action}-{digest}-{window}", (window + 1) * rule.window_s

    def _expires(self, window_end: float) -> datetime:
        # Kept a little past the window so a late flush of the same window still finds its document.
        return datetime.fromtimestamp(window_end, UTC) + timedelta(minutes=5)

    def _reject_if(self, rule: Rule, count: int, now: float, window_end: float) -> None:
        if count > rule.limit:
            raise RateLimited(rule.action, max(1, int(window_end - now + 0.999)))

    def hit(self, rule: Rule, key: str, deferred: bool = False) -> None:
        """Count one hit for ``key``; raise :class:`RateLimited` (429 + Retry-After) over the limit."""
        now = self._clock()
        bucket_id, window_end = self._bucket_id(rule, key, now)
        if deferred:
            with self._lock:
                bucket = self._buckets.setdefault(bucket_id, _Bucket(window_end))
                bucket.pending += 1
                count = bucket.shared_total + bucket.pending
            self._ensure_flusher()
            self._reject_if(rule, count, now, window_end)
            return
        try:
            count = self.store().increment(bucket_id, 1, self._expires(window_end))
            if self._store_failing:
                self._store_failing = False
                log.info("rate-limit store reachable again")
        except Exception as exc:
            count = self._count_locally(bucket_id, window_end, exc)
        self._reject_if(rule, count, now, window_end)

    def _count_locally(self, bucket_id: str, window_end: float, exc: Exception) -> int:
        if not self._store_failing:
            self._store_failing = True
            log.warning("rate-limit store unreachable; counting per instance", extra={"reason": type(exc).__name__})
        with self._lock:
            bucket = self._buckets.setdefault(bucket_id, _Bucket(window_end))
            bucket.local_only += 1
            return bucket.shared_total + bucket.pending + bucket.local_only

    # -- background sync of deferred hits -------------------------------------------------------------
    def _ensure_flusher(self) -> None:
        if self._flusher is not None and self._flusher.is_alive():
            return
        with self._lock:
            if self._flusher is not None and self._flusher.is_alive():
                return
            self._flusher = threading.Thread(target=self._flush_loop, name="ratelimit-sync", daemon=True)
            self._flusher.start()

    def _flush_loop(self) -> None:
        while True:
            self._wake.wait(self.sync_interval_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the loop must survive anything; flush() logs its own failures
                log.exception("rate-limit sync failed")

    def flush(self) -> int:
        """Add pending local hits to the shared counts now; returns how many buckets were synced."""
        now = self._clock()
        with self._lock:
            for bucket_id in [b for b, v in self._buckets.items() if v.window_end + 60 < now]:
                del self._buckets[bucket_id]
            work = [(b, v.pending, v.window_end) for b, v in self._buckets.items() if v.pending > 0]
        synced = 0
        for bucket_id, amount, window_end in work:
            try:
                total = self.store().increment(bucket_id, amount, self._expires(window_end))
            except Exception as exc:
                if not self._store_failing:
                    self._store_failing = True
                    log.warning("rate-limit sync failed; keeping local counts", extra={"reason": type(exc).__name__})
                continue
            self._store_failing = False
            with self._lock:
                bucket = self._buckets.get(bucket_id)
                if bucket is not None:
                    bucket.pending -= amount
                    bucket.shared_total = max(bucket.shared_total, total)
            synced += 1
        return synced
