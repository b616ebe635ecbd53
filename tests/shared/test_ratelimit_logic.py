"""shared.ratelimit's counting, windows, Retry-After, deferred sync and fallback, on a clock the test sets.

The counts go to an in-memory ``CounterStore`` (the limiter's own seam): these tests pin the limiter's arithmetic
and its behaviour when the store fails. The real Firestore counter, and the limits as real auth processes apply
them, are tested in tests/auth/test_ratelimit.py.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest

from shared.config import REPO_ROOT
from shared.ratelimit import RateLimited, RateLimiter, Rule, client_ip

WINDOW_START = 1_800_000_000.0  # a multiple of 60: the start of a one-minute window


class MemoryStore:
    """A shared counter, like the Firestore collection; can be told to fail for some buckets."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.calls: list[tuple[str, int, datetime]] = []
        self.failing: set[str] | bool = False
        self._lock = threading.Lock()

    def increment(self, bucket: str, amount: int, expires_at: datetime) -> int:
        if self.failing is True or (isinstance(self.failing, set) and bucket in self.failing):
            raise ConnectionError("store unreachable")
        with self._lock:
            self.calls.append((bucket, amount, expires_at))
            self.counts[bucket] = self.counts.get(bucket, 0) + amount
            return self.counts[bucket]


class Clock:
    def __init__(self, now: float = WINDOW_START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(store: MemoryStore, clock: Clock) -> RateLimiter:
    # A sync interval of an hour: the background flusher never runs during a test; the test calls flush().
    return RateLimiter(store, sync_interval_s=3600, clock=clock)


def retry_after_of(limiter_: RateLimiter, rule: Rule, key: str, deferred: bool = False) -> int:
    with pytest.raises(RateLimited) as info:
        limiter_.hit(rule, key, deferred=deferred)
    assert info.value.status == 429 and info.value.code == "rate_limited"
    assert info.value.headers["Retry-After"] == str(info.value.retry_after)
    return info.value.retry_after


def test_the_hit_over_the_limit_is_refused_with_the_seconds_left_in_the_window() -> None:
    store, clock = MemoryStore(), Clock()
    rule = Rule("login", limit=3)  # the default one-minute window
    limits = limiter(store, clock)
    for _ in range(3):
        limits.hit(rule, "client")
    assert sum(amount for _, amount, _ in store.calls) == 3, "each hit is counted in the shared store at once"
    assert retry_after_of(limits, rule, "client") == 60, "refused at the window's start: the whole minute left"
    clock.now = WINDOW_START + 59.5
    assert retry_after_of(limits, rule, "client") == 1, "half a second left rounds up to 1 s"
    clock.now = WINDOW_START + 59.9995
    assert retry_after_of(limits, rule, "client") == 1, "never Retry-After: 0"
    limits.hit(rule, "another client")  # counted on its own


def test_a_new_window_starts_a_new_count() -> None:
    store, clock = MemoryStore(), Clock(WINDOW_START + 30)
    rule = Rule("login", limit=1, window_s=60)
    limits = limiter(store, clock)
    limits.hit(rule, "client")
    assert retry_after_of(limits, rule, "client") == 30
    clock.now = WINDOW_START + 60
    limits.hit(rule, "client")


def test_bucket_ids_hide_the_key_and_are_the_same_in_every_version() -> None:
    """The bucket id is shared by every instance, also by an old and a new revision during a canary release:
    a change to its form would give each revision its own count (twice the limit), so it is pinned here."""
    store, clock = MemoryStore(), Clock(WINDOW_START + 10)
    limits = limiter(store, clock)
    limits.hit(Rule("login", limit=5), "203.0.113.9")
    bucket, amount, expires_at = store.calls[0]
    key_digest = hashlib.sha256(b"203.0.113.9").hexdigest()[:24]
    assert bucket == f"login-{key_digest}-{int(WINDOW_START // 60)}"
    assert "203.0.113.9" not in bucket
    window_end = datetime.fromtimestamp(WINDOW_START + 60, UTC)
    assert expires_at > window_end, "the document outlives its window, so a late flush still finds it"


def test_deferred_hits_are_counted_locally_and_flushed_to_the_shared_count() -> None:
    store, clock = MemoryStore(), Clock()
    rule = Rule("validate", limit=3)
    one, two = limiter(store, clock), limiter(store, clock)  # two instances of a service
    one.hit(rule, "client", deferred=True)
    one.hit(rule, "client", deferred=True)
    assert store.calls == [], "a deferred hit does not wait for the store"
    assert one.flush() == 1 and [amount for _, amount, _ in store.calls] == [2]
    assert one.flush() == 0 and len(store.calls) == 1, "flushed hits are not sent twice"
    two.hit(rule, "client", deferred=True)
    assert two.flush() == 1
    assert retry_after_of(two, rule, "client", deferred=True) == 60, "two sees one's hits after its flush"
    one.hit(rule, "client", deferred=True)  # one's own count (2, plus this) is still within the limit
    assert retry_after_of(one, rule, "client", deferred=True) == 60


def test_a_deferred_limit_refuses_the_hit_over_the_limit_before_any_flush() -> None:
    rule = Rule("validate", limit=3)
    limits = limiter(MemoryStore(), Clock())
    for _ in range(3):
        limits.hit(rule, "client", deferred=True)
    assert retry_after_of(limits, rule, "client", deferred=True) == 60


def test_a_store_given_as_a_factory_is_built_once_and_used() -> None:
    store, made = MemoryStore(), []

    def factory() -> MemoryStore:
        made.append(1)
        return store

    limits = RateLimiter(factory, sync_interval_s=3600, clock=Clock())
    limits.hit(Rule("login", limit=5), "client")
    limits.hit(Rule("login", limit=5), "client")
    assert made == [1] and len(store.calls) == 2


def test_an_old_window_is_dropped_a_minute_after_it_ends_and_no_sooner() -> None:
    store, clock = MemoryStore(), Clock()
    rule = Rule("validate", limit=10)
    limits = limiter(store, clock)
    limits.hit(rule, "client", deferred=True)
    clock.now = WINDOW_START + 60 + 60  # the window ended a minute ago: still flushed
    assert limits.flush() == 1
    clock.now = WINDOW_START
    limits.hit(rule, "other", deferred=True)
    clock.now = WINDOW_START + 60 + 60.5  # the hit's window ended more than a minute ago: dropped, memory bounded
    assert limits.flush() == 0
    assert len(store.calls) == 1


def test_a_failing_bucket_does_not_stop_the_others_from_syncing() -> None:
    store, clock = MemoryStore(), Clock()
    rule = Rule("validate", limit=10)
    limits = limiter(store, clock)
    for key in ("a", "b", "c"):
        limits.hit(rule, key, deferred=True)
    store.failing = {f"validate-{hashlib.sha256(b'a').hexdigest()[:24]}-{int(WINDOW_START // 60)}"}
    assert limits.flush() == 2, "the two others synced"
    store.failing = False
    assert limits.flush() == 1, "the failed one is kept and synced later"
    assert sum(amount for _, amount, _ in store.calls) == 3


def test_when_the_store_is_down_every_hit_of_this_instance_counts(caplog: pytest.LogCaptureFixture) -> None:
    store, clock = MemoryStore(), Clock()
    rule = Rule("login", limit=3)
    limits = limiter(store, clock)
    store.failing = True
    with caplog.at_level(logging.INFO, logger="ratelimit"):
        limits.hit(rule, "client", deferred=True)
        limits.hit(rule, "client", deferred=True)
        assert limits.flush() == 0, "nothing synced, nothing raised"
        limits.hit(rule, "client")  # counted here: 2 deferred + 1
        assert retry_after_of(limits, rule, "client") == 60
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("rate-limit sync failed; keeping local counts") == 1
    assert not any("unreachable; counting per instance" in m for m in messages), "already said once"


def test_store_failures_are_logged_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    store, clock = MemoryStore(), Clock()
    rule = Rule("login", limit=100)
    limits = limiter(store, clock)
    with caplog.at_level(logging.INFO, logger="ratelimit"):
        limits.hit(rule, "client")
        store.failing = True
        limits.hit(rule, "client")
        limits.hit(rule, "client")
        store.failing = False
        limits.hit(rule, "client")
        limits.hit(rule, "client")
        store.failing = True
        limits.hit(rule, "client")
        limits.hit(rule, "other", deferred=True)
        limits.flush()
        store.failing = False
        assert limits.flush() == 1
        store.failing = True
        limits.hit(rule, "other", deferred=True)
        limits.flush()
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("rate-limit store unreachable; counting per instance") == 2
    assert messages.count("rate-limit store reachable again") == 1
    assert messages.count("rate-limit sync failed; keeping local counts") == 1, "the second outage began in hit()"


def test_the_background_flusher_syncs_and_survives_an_error() -> None:
    store = MemoryStore()
    calls = {"n": 0}

    def clock() -> float:
        calls["n"] += 1
        if calls["n"] == 2:  # the flusher's first flush: any error must not end the loop
            raise RuntimeError("boom")
        return WINDOW_START

    limits = RateLimiter(store, sync_interval_s=0.01, clock=clock)
    limits.hit(Rule("validate", limit=10), "client", deferred=True)
    deadline = time.monotonic() + 20
    while not store.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    limits.sync_interval_s = 3600  # the daemon thread lives on in this process: let it sleep
    assert [amount for _, amount, _ in store.calls] == [1]


def test_the_default_flusher_waits_between_syncs() -> None:
    store, flushes = MemoryStore(), []

    class Counting(RateLimiter):
        def flush(self) -> int:
            flushes.append(1)
            return super().flush()

    limits = Counting(store, clock=Clock())
    started = time.monotonic()
    limits.hit(Rule("validate", limit=10), "client", deferred=True)
    time.sleep(0.3)
    flushed = len(flushes)
    elapsed = time.monotonic() - started
    limits.sync_interval_s = 3600
    assert flushed <= elapsed / 0.5 + 1, "the default sync interval is a pause, not a busy loop"


def test_the_flusher_thread_does_not_keep_a_process_alive() -> None:
    """A service process with a deferred limit in use must still exit (the flusher is a daemon thread)."""
    code = (
        "from shared.ratelimit import RateLimiter, Rule\n"
        "class S:\n"
        "    def increment(self, bucket, amount, expires_at): return amount\n"
        "RateLimiter(S(), sync_interval_s=3600).hit(Rule('v', 10), 'k', deferred=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, timeout=60, capture_output=True)
    assert done.returncode == 0, done.stderr


def test_client_ip_with_fewer_entries_than_trusted_proxies_takes_the_outermost() -> None:
    # Misconfigured hop count (more proxies trusted than appended entries): the entry the first proxy wrote.
    assert client_ip({"X-Forwarded-For": "203.0.113.9, 10.0.0.1"}, "10.9.9.9", 3) == "203.0.113.9"
