"""The startup manager: ordering, parallelism, retries, breakers, degraded mode, health bodies."""

from __future__ import annotations

import functools
import logging
import threading
import time

import pytest

from shared import startup
from shared.errors import ServiceUnavailable
from shared.startup import (
    BreakerState,
    CircuitBreaker,
    Component,
    FatalStartupError,
    Priority,
    RetryPolicy,
    StartupGraphError,
    StartupManager,
    failure_reason,
)

FAST = RetryPolicy(initial_s=0.01, max_s=0.05)


class FakeClock:
    """The manager's (and a breaker's) injectable clock: moves only when the test says so."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _until(condition, what: object = "", timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(0.01)


def test_dependencies_start_in_order() -> None:
    order: list[str] = []
    lock = threading.Lock()

    def step(name: str):
        def start() -> str:
            time.sleep(0.02)
            with lock:
                order.append(name)
            return name

        return start

    manager = StartupManager("t")
    manager.register_all(
        [
            Component("schema", step("schema"), depends_on=("database",), retry=FAST),
            Component("database", step("database"), retry=FAST),
            Component("cache", step("cache"), depends_on=("schema", "database"), retry=FAST),
        ]
    )
    manager.start()
    assert manager.wait_ready(5)
    assert order == ["database", "schema", "cache"]
    assert manager.resource("cache") == "cache"


def test_independent_components_start_in_parallel() -> None:
    """Proven by overlap: each start waits at a barrier that only opens when both are running."""
    barrier = threading.Barrier(2, timeout=3)

    def meet() -> bool:
        barrier.wait()
        return True

    manager = StartupManager("t")
    manager.register(Component("a", meet, retry=RetryPolicy(max_attempts=1)))
    manager.register(Component("b", meet, retry=RetryPolicy(max_attempts=1)))
    manager.start()
    assert manager.wait_ready(5), manager.snapshot()
    assert manager.snapshot()["components"]["a"]["attempts"] == 1


def test_critical_component_ready_after_retries() -> None:
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] <= 3:
            raise ConnectionError(f"refused #{calls['n']}")
        return "ok"

    manager = StartupManager("t")
    manager.register(Component("database", flaky, retry=FAST, breaker_threshold=10))
    manager.start()
    assert manager.wait_ready(5)
    snap = manager.snapshot()["components"]["database"]
    assert snap["attempts"] == 4 and snap["status"] == "up" and snap["last_error"] is None


def test_scenario_10_never_succeeding_critical_component_is_not_ready_without_crash() -> None:
    """Scenario 10: /health/ready is false until every critical component is up; /health/live stays true."""
    manager = StartupManager("t")
    manager.register(
        Component(
            "database",
            lambda: (_ for _ in ()).throw(ConnectionRefusedError("db down")),
            retry=FAST,
            breaker_threshold=100,
        )
    )
    manager.start()
    time.sleep(0.3)
    status, body, headers = manager.health("ready")
    assert status == 503 and headers["Retry-After"]
    # Issue 15, finding 6: a stable code in the public answer; the exception's text only in the snapshot/log.
    assert body["waiting_for"]["database"] == {"code": "unreachable"}
    assert "db down" not in str(body)
    assert manager.health("live")[0] == 200
    snap = manager.snapshot()
    assert snap["status"] == "starting" and snap["components"]["database"]["attempts"] > 2
    status, body, _ = manager.health("startup")
    assert status == 503 and body["status"] == "starting" and body["ready"] is False
    with pytest.raises(ServiceUnavailable) as info:
        manager.require("database", timeout_s=0.1)
    assert info.value.status == 503 and int(info.value.headers["Retry-After"]) >= 1
    manager.stop()


def test_scenario_13_optional_component_down_means_degraded_but_ready() -> None:
    """Scenario 13: an optional dependency down -> ready, degraded, and said so in /health/startup."""
    manager = StartupManager("t")
    manager.register(Component("database", lambda: "db", retry=FAST))
    manager.register(
        Component(
            "replay_store",
            lambda: (_ for _ in ()).throw(OSError("firestore down")),
            priority=Priority.MEDIUM,
            retry=RetryPolicy(initial_s=0.01, max_s=0.02, max_attempts=3),
        )
    )
    manager.start()
    assert manager.wait_ready(5)
    deadline = time.monotonic() + 5
    while manager.snapshot()["components"]["replay_store"]["status"] != "failed" and time.monotonic() < deadline:
        time.sleep(0.02)
    status, body, _ = manager.health("startup")
    assert status == 200 and body["status"] == "degraded" and body["degraded"] is True
    assert body["components"]["replay_store"]["error"] == {"code": "unreachable"}
    assert "last_error" not in body["components"]["replay_store"] and "firestore down" not in str(body)
    assert "firestore down" in manager.snapshot()["components"]["replay_store"]["last_error"], "kept for the log"
    assert manager.health("ready")[0] == 200


def test_fatal_error_is_not_retried() -> None:
    calls = {"n": 0}

    def wrong_password() -> None:
        calls["n"] += 1
        raise FatalStartupError("wrong database password (SQLSTATE 28P01)")

    manager = StartupManager("t")
    manager.register(Component("database", wrong_password, retry=FAST))
    manager.start()
    time.sleep(0.3)
    snap = manager.snapshot()
    assert calls["n"] == 1
    assert snap["status"] == "failed" and "28P01" in snap["components"]["database"]["last_error"]


def test_attempt_timeout_counts_as_failure() -> None:
    calls = {"n": 0}

    def hangs_once() -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(2)
        return "ok"

    manager = StartupManager("t")
    manager.register(Component("peer", hangs_once, timeout_s=0.2, retry=FAST))
    manager.start()
    assert manager.wait_ready(5)
    assert manager.snapshot()["components"]["peer"]["attempts"] == 2


def test_cycles_and_unknown_names_rejected_at_registration() -> None:
    manager = StartupManager("t")
    with pytest.raises(StartupGraphError, match="a -> b -> a"):
        manager.register_all(
            [Component("a", lambda: 1, depends_on=("b",)), Component("b", lambda: 1, depends_on=("a",))]
        )
    with pytest.raises(StartupGraphError, match="unknown component"):
        manager.register(Component("schema", lambda: 1, depends_on=("database",)))
    with pytest.raises(StartupGraphError, match="'schema' depends on unknown component"):  # a batch, too
        manager.register_all([Component("keyset", lambda: 1), Component("schema", lambda: 1, depends_on=("db",))])
    manager.register(Component("x", lambda: 1))
    with pytest.raises(StartupGraphError, match="twice"):
        manager.register(Component("x", lambda: 1))


def test_dependents_of_a_failed_component_fail_with_reason() -> None:
    manager = StartupManager("t")
    manager.register(Component("database", lambda: (_ for _ in ()).throw(FatalStartupError("no permission"))))
    manager.register(Component("schema", lambda: 1, depends_on=("database",)))
    manager.start()
    time.sleep(0.5)
    schema = manager.snapshot()["components"]["schema"]
    assert schema["status"] == "failed" and "no permission" in schema["last_error"]


def test_breaker_opens_after_three_failures_and_half_opens() -> None:
    now = {"t": 0.0}
    breaker = CircuitBreaker("db", failure_threshold=3, recovery_s=10, clock=lambda: now["t"])
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    assert breaker.retry_after() == pytest.approx(10)
    now["t"] = 10.0  # the moment retry_after() reaches 0, the trial may go
    assert breaker.state is BreakerState.HALF_OPEN
    now["t"] = 10.5
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.retry_after() == 0.0, "nothing left to wait once the trial may go"
    assert breaker.allow(), "one trial goes through when half open"
    assert not breaker.allow(), "only one trial at a time"
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN, "a failed trial reopens the breaker"
    now["t"] = 21
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


@pytest.mark.parametrize("after_a_trial", [False, True])
def test_a_success_gives_the_breaker_its_whole_threshold_again(after_a_trial: bool) -> None:
    """After a success (a trial that passed, or any call while closed) the breaker opens again only after
    failure_threshold new consecutive failures, not at the first one: the database, Pub/Sub and LLM breakers
    record many calls, and one failure after a recovery must not cut the dependency off again."""
    now = {"t": 0.0}
    breaker = CircuitBreaker("db", failure_threshold=3, recovery_s=10, clock=lambda: now["t"])
    for _ in range(3 if after_a_trial else 2):
        breaker.record_failure()
    if after_a_trial:
        now["t"] = 10.0
        assert breaker.allow(), "the trial goes through when half open"
    breaker.record_success()
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
        assert breaker.state is BreakerState.CLOSED, breaker.snapshot()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and breaker.snapshot()["consecutive_failures"] == 3


def test_backoff_has_jitter_and_bounds() -> None:
    policy = RetryPolicy(initial_s=1, max_s=30)
    delays = [policy.delay(8) for _ in range(200)]
    assert max(delays) <= 30 and min(delays) >= 0.5
    assert len({round(d, 3) for d in delays}) > 150, "delays must be spread (jitter)"
    assert all(policy.delay(1) <= 1 for _ in range(50))


def test_scenario_5_default_retry_policy_backs_off_exponentially_with_jitter() -> None:
    """Scenario 5: with the defaults, a component that keeps failing waits longer after each failed attempt, never
    0 s (no hammering of a database that is down), spread by jitter, and capped."""
    policy = RetryPolicy()
    first = [policy.delay(1) for _ in range(200)]
    fifth = [policy.delay(5) for _ in range(200)]
    assert min(first) > 0, "no wait before the second attempt"
    assert len({round(d, 3) for d in first}) > 150, "the first retries of many instances must be spread too"
    assert max(fifth) > 2 * max(first), "the waits do not grow"
    assert len({round(d, 3) for d in fifth}) > 150, "delays must be spread (jitter)"
    assert max(policy.delay(60) for _ in range(50)) <= policy.max_s
    for attempt in (1, 2, 3, 4):  # after the n-th failure the wait is at most initial_s * multiplier ** (n - 1)
        ceiling = policy.initial_s * policy.multiplier ** (attempt - 1)
        delays = [policy.delay(attempt) for _ in range(200)]
        assert 0.75 * ceiling < max(delays) <= ceiling, attempt


def test_failure_reason_is_a_stable_public_code() -> None:
    """What health answers and 503 bodies say about a failed attempt: the exception's own code, else timeout,
    unreachable or start_failed by kind, never the exception's text."""

    class Stalled(TimeoutError):
        pass

    class ReadTimeout(Exception):  # httpx's and Google's timeouts are not TimeoutError
        pass

    class ConnectError(Exception):  # nor are their connection errors OSError
        pass

    class NoSchema(Exception):
        reason_code = "schema_missing"
        public_details = {"missing": ["0007_runs"]}

    class BadDetails(Exception):
        reason_code = "misconfigured"
        public_details = "host=10.0.0.3"

    assert failure_reason(NoSchema("relation runs does not exist")) == ("schema_missing", {"missing": ["0007_runs"]})
    assert failure_reason(BadDetails()) == ("misconfigured", {})
    assert failure_reason(FatalStartupError("wrong password")) == ("misconfigured", {})
    assert failure_reason(Stalled("attempt took too long")) == ("timeout", {})
    assert failure_reason(ReadTimeout("read timed out")) == ("timeout", {})
    assert failure_reason(ConnectionRefusedError("10.0.0.3:5432")) == ("unreachable", {})
    assert failure_reason(ConnectError("no route")) == ("unreachable", {})
    assert failure_reason(ValueError("bad answer")) == ("start_failed", {})


def test_request_waits_for_starting_component_then_gets_it() -> None:
    """Scenario 6 (unit level): a request made while a dependency starts waits and then succeeds."""
    gate = threading.Event()
    manager = StartupManager("t")
    manager.register(Component("database", lambda: gate.wait(5) and "db", retry=FAST))
    manager.start()
    threading.Timer(0.3, gate.set).start()
    assert manager.require("database", timeout_s=5) == "db"


def _deferred_manager() -> tuple[StartupManager, list[str]]:
    started: list[str] = []
    manager = StartupManager("t")
    manager.DEFER_S = manager.DEFER_MAX_S = 30.0  # long enough that only a release can start them within the test
    manager.register(Component("keyset", lambda: started.append("keyset") or "t", retry=FAST))
    manager.register(
        Component("pubsub", lambda: started.append("pubsub") or "p", Priority.HIGH, retry=FAST, deferred=True)
    )
    manager.register(
        Component(
            "firestore",
            lambda: started.append("firestore") or "f",
            Priority.MEDIUM,
            ("pubsub",),
            retry=FAST,
            deferred=True,
        )
    )
    return manager, started


def test_deferred_components_wait_for_the_first_response() -> None:
    """Cold start: what the first request does not need starts after it is answered; readiness ignores the
    order, and /health/startup says which components are deferred."""
    manager, started = _deferred_manager()
    manager.start()
    assert manager.require("keyset", timeout_s=5) == "t"
    time.sleep(0.2)
    assert started == ["keyset"], "requiring a component that is not deferred releases nothing"
    assert manager.snapshot()["components"]["pubsub"]["deferred"] is True
    manager.release_deferred()
    assert manager.require("firestore", timeout_s=5) == "f"
    assert started == ["keyset", "pubsub", "firestore"]


def test_requiring_a_deferred_component_starts_it_at_once() -> None:
    """A request that needs a deferred component (or one that depends on it) does not wait for the delay."""
    manager, started = _deferred_manager()
    manager.start()
    # tokens (not deferred) starts on its own thread: let it finish first, or on a loaded machine it can
    # append after pubsub and the order below would be a race, not the rule.
    assert manager.require("keyset", timeout_s=5) == "t"
    assert manager.require("firestore", timeout_s=5) == "f"
    assert started[-2:] == ["pubsub", "firestore"]


def test_deferred_components_wait_for_what_the_first_request_needs() -> None:
    """Cold start on a loaded instance: with no response yet, deferred components do not start while a component
    the first request needs (the database) is still starting; they start DEFER_S after it is up."""
    started: list[str] = []
    gate = threading.Event()
    manager = StartupManager("t")
    manager.DEFER_S = 0.1
    manager.register(Component("database", lambda: gate.wait(5) and (started.append("database") or "db"), retry=FAST))
    manager.register(
        Component("prices", lambda: started.append("prices") or "p", Priority.LOW, retry=FAST, deferred=True)
    )
    manager.start()
    time.sleep(0.5)  # five times DEFER_S after the start, the database still connecting
    assert started == [], "a deferred component started while the first request's database was not up"
    gate.set()
    deadline = time.monotonic() + 5
    while not manager.is_up("prices"):
        assert time.monotonic() < deadline, manager.snapshot()
        time.sleep(0.02)
    assert started == ["database", "prices"]


def test_deferred_components_start_at_the_latest_after_the_longest_delay() -> None:
    """A component the first request needs that keeps retrying does not hold the deferred ones back forever."""
    started: list[str] = []
    manager = StartupManager("t")
    manager.DEFER_MAX_S = 0.3
    manager.register(Component("database", lambda: (_ for _ in ()).throw(OSError("refused")), retry=FAST))
    manager.register(
        Component("prices", lambda: started.append("prices") or "p", Priority.LOW, retry=FAST, deferred=True)
    )
    manager.start()
    try:
        deadline = time.monotonic() + 5
        while not manager.is_up("prices"):
            assert time.monotonic() < deadline, manager.snapshot()
            time.sleep(0.02)
        assert not manager.is_up("database") and started == ["prices"]
    finally:
        manager.stop()


def test_deferred_components_start_by_themselves_after_the_delay() -> None:
    """No request at all (an idle warm instance): deferred components still start, DEFER_S after the start."""
    manager, started = _deferred_manager()
    manager.DEFER_S = 0.2
    manager.start()
    deadline = time.monotonic() + 5
    while not manager.is_up("firestore"):
        assert time.monotonic() < deadline, manager.snapshot()
        time.sleep(0.02)
    assert started[0] == "keyset" and set(started) == {"keyset", "pubsub", "firestore"}


def test_require_database_waits_for_the_schema_unless_told_not_to() -> None:
    """shared.service.require_database: the database only after the schema check; schema=False (ws_bridge's
    ownership check, admitted once the instance was ready) takes the connection without it."""
    from shared.service import require_database

    schema_checked = threading.Event()
    manager = StartupManager("t")
    manager.register(Component("database", lambda: "db", retry=FAST))
    manager.register(Component("schema", lambda: schema_checked.wait(5) and 7, depends_on=("database",)))
    manager.start()
    with pytest.raises(ServiceUnavailable) as info:
        require_database(manager, 0.2)
    assert info.value.code == "schema_unavailable"
    assert require_database(manager, 2.0, schema=False) == "db"
    schema_checked.set()
    assert require_database(manager, 2.0) == "db"


def test_scenario_13_optional_component_is_tried_exactly_max_attempts_times() -> None:
    """Scenario 13: an optional dependency with max_attempts gives up after exactly that many failed attempts (the
    service then runs degraded); one that answers within them is up, not given up after its first failure."""
    calls = {"replay_store": 0, "analytics": 0}

    def replay_store() -> None:
        calls["replay_store"] += 1
        raise OSError("firestore down")

    def analytics() -> str:
        calls["analytics"] += 1
        if calls["analytics"] < 3:
            raise OSError("not yet")
        return "a"

    policy = RetryPolicy(initial_s=0.001, max_s=0.002, max_attempts=3)
    manager = StartupManager("t")
    manager.register(Component("database", lambda: "db", retry=FAST))
    for name, start in (("replay_store", replay_store), ("analytics", analytics)):
        manager.register(Component(name, start, Priority.MEDIUM, retry=policy, breaker_threshold=10))
    manager.start()
    try:
        components = lambda: manager.snapshot()["components"]  # noqa: E731
        _until(lambda: all(c["status"] in ("up", "failed") for c in components().values()), components)
        time.sleep(0.05)  # a component that wrongly keeps trying would make a fourth attempt now
        snap = components()
        assert snap["replay_store"]["status"] == "failed" and snap["replay_store"]["attempts"] == 3
        assert calls["replay_store"] == 3
        assert snap["analytics"]["status"] == "up" and snap["analytics"]["attempts"] == 3
        assert manager.snapshot()["status"] == "degraded"
    finally:
        manager.stop()


def test_component_duration_is_measured_on_the_managers_clock() -> None:
    """duration_ms (in /health/startup and the `component up` line) is the time from the manager's creation to the
    component being up, in milliseconds; uptime_ms the time from the creation to the snapshot."""
    clock = FakeClock(100.0)
    manager = StartupManager("t", clock=clock)

    def database() -> str:
        clock.t = 100.25
        return "db"

    manager.register(Component("database", database, retry=FAST))
    manager.start()
    assert manager.wait_ready(5)
    assert manager.snapshot()["components"]["database"]["duration_ms"] == 250.0
    snap = manager.snapshot()
    assert (snap["status"], snap["degraded"]) == ("ready", False), "every component is up: not degraded"
    clock.t = 101.5
    assert manager.snapshot()["uptime_ms"] == 1500.0


def test_scenario_10_startup_complete_is_logged_once_when_every_critical_component_is_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Scenario 10: `startup complete` (its startup_ms is the netra/startup_ms cold-start metric, docs/OPERATIONS.md)
    is logged once, when the last critical component is up: not when the first one is, nor again when an optional
    one comes up later."""
    # An earlier test's component thread may log its last lines after that test returned (it sets up_event
    # before it logs): wait for those threads to end so their lines cannot land in this test's records.
    _until(lambda: not [t for t in threading.enumerate() if t.name.startswith("startup-")], "earlier managers' threads")
    caplog.set_level(logging.INFO, logger="startup")
    caplog.clear()
    clock = FakeClock(100.0)
    keyset_gate, analytics_gate = threading.Event(), threading.Event()
    manager = StartupManager("t", clock=clock)
    manager.register(Component("database", lambda: "db", retry=FAST))
    manager.register(Component("keyset", lambda: keyset_gate.wait(5) and "k", retry=FAST))
    manager.register(Component("analytics", lambda: analytics_gate.wait(5) and "a", Priority.LOW, retry=FAST))

    def logged(message: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "startup" and r.getMessage() == message]

    manager.start()
    try:
        assert manager.require("database", timeout_s=5) == "db"
        _until(lambda: logged("component up"), "no `component up` line for the database")
        time.sleep(0.05)  # the database's thread checks for completion right after that line
        assert not logged("startup complete"), "logged while the keyset was not up"
        clock.t = 101.5
        keyset_gate.set()
        _until(lambda: logged("startup complete"), "no `startup complete` line once every critical one was up")
        analytics_gate.set()
        assert manager.require("analytics", timeout_s=5) == "a"
        _until(lambda: len(logged("component up")) == 3, "no `component up` line for analytics")
        time.sleep(0.05)  # analytics' thread checks for completion right after that line
        [complete] = logged("startup complete")
        # Ready at 1.5 s; degraded then, as analytics (optional) was still starting.
        assert complete.startup_ms == 1500.0 and complete.degraded is True  # type: ignore[attr-defined]
    finally:
        keyset_gate.set()
        analytics_gate.set()
        manager.stop()


def test_requiring_a_starting_component_that_is_not_deferred_releases_nothing() -> None:
    """Cold start: a request waiting for the key set (not deferred) while it is still starting does not start the
    deferred components; only a request for a deferred component (or one depending on it) does."""
    gate = threading.Event()
    pubsub_started = threading.Event()
    manager = StartupManager("t")
    manager.DEFER_S = manager.DEFER_MAX_S = 30.0  # only a release can start them within the test
    manager.register(Component("keyset", lambda: gate.wait(5) and "k", retry=FAST))
    manager.register(Component("pubsub", lambda: pubsub_started.set() or "p", Priority.HIGH, retry=FAST, deferred=True))
    manager.start()
    try:
        with pytest.raises(ServiceUnavailable):
            manager.require("keyset", timeout_s=0.2)
        assert not pubsub_started.wait(0.3), "requiring the key set released the deferred components"
        gate.set()
        assert manager.require("pubsub", timeout_s=5) == "p"
    finally:
        gate.set()
        manager.stop()


def test_scenario_6_retry_after_is_the_breakers_wait_and_at_least_one_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenario 6: while the database is down, a request gets 503 whose Retry-After is the time until the breaker
    lets the next attempt through, rounded, and never 0 (a client told 0 retries at once); 2 s while a component is
    still starting. The exception carries the same figure as its header (callers may pass it on)."""
    clock = FakeClock(10.0)
    monkeypatch.setattr(startup, "CircuitBreaker", functools.partial(CircuitBreaker, clock=clock))
    gate = threading.Event()
    manager = StartupManager("t", clock=clock)
    manager.register(
        Component(
            "database",
            lambda: (_ for _ in ()).throw(ConnectionRefusedError("db down")),
            retry=FAST,
            breaker_threshold=1,
            breaker_recovery_s=5.0,
        )
    )
    manager.register(Component("keyset", lambda: gate.wait(5) and "k", retry=FAST))
    manager.start()

    def unavailable(name: str) -> ServiceUnavailable:
        with pytest.raises(ServiceUnavailable) as info:
            manager.require(name, timeout_s=0)
        return info.value

    try:
        breaker = lambda: manager.snapshot()["components"]["database"]["breaker"]  # noqa: E731
        _until(lambda: breaker()["state"] == "open", breaker)
        for now, seconds in ((10.0, 5), (11.4, 4), (14.7, 1)):  # the breaker opened at 10, for 5 s
            clock.t = now
            exc = unavailable("database")
            assert (exc.retry_after, exc.headers["Retry-After"]) == (seconds, str(seconds)), now
            assert exc.details["reason"] == "unreachable"
        exc = unavailable("keyset")
        assert (exc.retry_after, exc.headers["Retry-After"]) == (2, "2")
        assert exc.details == {"component": "keyset", "reason": "starting"}
    finally:
        gate.set()
        manager.stop()


def test_a_components_default_breaker_opens_after_three_failures_and_tries_again_after_five_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the Component defaults, three consecutive failed attempts open the breaker, and the next attempt waits
    until 5 s on the manager's clock have passed: a dependency that comes back is used again within seconds. The
    component keeps asking its breaker while it is open (it does not give up when refused)."""
    clock = FakeClock(0.0)
    refused = threading.Event()

    class Breaker(CircuitBreaker):
        def allow(self) -> bool:
            allowed = super().allow()
            if not allowed:
                refused.set()
            return allowed

    monkeypatch.setattr(startup, "CircuitBreaker", functools.partial(Breaker, clock=clock))
    back = threading.Event()

    def database() -> str:
        if not back.is_set():
            raise ConnectionRefusedError("db down")
        return "db"

    manager = StartupManager("t", clock=clock)
    manager.register(Component("database", database, retry=FAST))
    manager.start()
    try:
        component = lambda: manager.snapshot()["components"]["database"]  # noqa: E731
        _until(lambda: component()["breaker"]["state"] == "open", component)
        snap = component()
        assert (snap["attempts"], snap["breaker"]["consecutive_failures"]) == (3, 3), snap
        assert refused.wait(5), "the open breaker was never asked"
        clock.t = 4.9  # the breaker opened at 0: still open, no attempt yet
        snap = component()
        assert (snap["breaker"]["state"], snap["attempts"]) == ("open", 3), snap
        back.set()
        clock.t = 5.0
        _until(lambda: component()["status"] == "up", component)
        assert component()["attempts"] == 4
    finally:
        manager.stop()


def test_deferred_components_start_when_the_managers_clock_reaches_the_delay() -> None:
    """The deferred start is timed on the manager's clock and happens at the delay itself, not later."""
    clock = FakeClock(0.0)
    started = threading.Event()
    manager = StartupManager("t", clock=clock)
    manager.DEFER_S = manager.DEFER_MAX_S = 0.05
    manager.register(Component("prices", lambda: started.set() or "p", Priority.LOW, retry=FAST, deferred=True))
    manager.start()
    try:
        assert not started.wait(0.3), "started before the manager's clock reached the delay"
        clock.t = 0.05  # exactly the delay: nothing remains to wait
        assert started.wait(5), "not started at the delay"
    finally:
        manager.stop()


def test_scenario_13_health_startup_names_each_components_priority_and_only_critical_ones_gate() -> None:
    """Scenario 13: /health/startup says each component's priority as registered, and only critical components
    keep the instance from being ready (the four priorities are distinct: none is another's alias)."""
    gate = threading.Event()
    manager = StartupManager("t")
    names = {"database": Priority.CRITICAL, "keyset": Priority.HIGH, "replay_store": Priority.MEDIUM}
    for name, priority in names.items():
        manager.register(Component(name, (lambda: "up") if name == "database" else (lambda: gate.wait(5)), priority))
    manager.register(Component("analytics", lambda: gate.wait(5), Priority.LOW))
    manager.start()
    try:
        assert manager.wait_ready(5)
        status, body, _ = manager.health("startup")
        priorities = {name: c["priority"] for name, c in body["components"].items()}
        assert priorities == {"database": "critical", "keyset": "high", "replay_store": "medium", "analytics": "low"}
        assert status == 200 and body["status"] == "degraded"
    finally:
        gate.set()
        manager.stop()


def test_scenario_10_health_ready_waits_for_the_critical_components_not_up_only() -> None:
    """Scenario 10: /health/ready's 503 names each critical component that is not up, and why; not one that is
    up, nor an optional one (it does not gate readiness)."""
    gate = threading.Event()
    manager = StartupManager("t")
    manager.register(Component("database", lambda: "db", retry=FAST))
    manager.register(Component("keyset", lambda: gate.wait(5) and "k", retry=FAST))
    manager.register(Component("analytics", lambda: gate.wait(5) and "a", Priority.LOW, retry=FAST))
    manager.start()
    try:
        assert manager.require("database", timeout_s=5) == "db"
        status, body, headers = manager.health("ready")
        assert status == 503 and headers == {"Retry-After": "2"}
        assert body == {"status": "starting", "service": "t", "waiting_for": {"keyset": {"code": "starting"}}}
    finally:
        gate.set()
        manager.stop()


def test_deferred_components_start_a_delay_after_what_the_first_request_needs_is_up() -> None:
    """Cold start: with the default delays, a deferred component does not start the moment the components the
    first request needs are up (the response goes out first), but DEFER_S later on the manager's clock."""
    clock = FakeClock(0.0)
    started = threading.Event()
    manager = StartupManager("t", clock=clock)
    manager.register(Component("keyset", lambda: "k", retry=FAST))
    manager.register(Component("prices", lambda: started.set() or "p", Priority.LOW, retry=FAST, deferred=True))
    manager.start()
    try:
        assert manager.require("keyset", timeout_s=5) == "k"
        assert not started.wait(0.3), "started as soon as the key set was up, with no delay"
        clock.t = manager.DEFER_S
        assert started.wait(5), "not started DEFER_S after the key set was up"
    finally:
        manager.stop()


@pytest.mark.parametrize("first", ["live", "startup", "require"])
def test_the_first_health_check_or_request_starts_a_manager_not_started_yet(first: str) -> None:
    """A server that does not fork (start_when_serving's fallback): the first health probe or request starts the
    components; a manager already started is not started twice."""
    calls = {"n": 0}

    def database() -> str:
        calls["n"] += 1
        return "db"

    manager = StartupManager("t")
    manager.register(Component("database", database, retry=FAST))
    if first == "require":
        assert manager.require("database", 5) == "db"
    else:
        manager.health(first)
    assert manager.wait_ready(5)
    manager.health("ready")
    manager.require("database", 0)
    assert calls["n"] == 1


def test_wait_ready_gives_up_at_its_deadline() -> None:
    """wait_ready answers False once its deadline has passed, not after waiting longer for a component that comes
    up later (it waits at most timeout_s in all)."""
    gate = threading.Event()
    manager = StartupManager("t")
    manager.register(Component("database", lambda: gate.wait(5) and "db", retry=FAST))
    manager.start()
    timer = threading.Timer(0.5, gate.set)
    timer.start()
    try:
        assert manager.wait_ready(0.1) is False
        assert manager.wait_ready(5) is True
    finally:
        timer.cancel()
        gate.set()
        manager.stop()


def test_component_threads_are_daemons() -> None:
    """A component stuck in its first attempt must not keep a stopping instance alive: its thread is a daemon."""
    gate = threading.Event()
    manager = StartupManager("t")
    manager.register(Component("stuck", lambda: gate.wait(5) and "s", retry=FAST))
    manager.start()
    try:
        threads = [t for t in threading.enumerate() if t.name == "startup-stuck"]
        assert threads and all(t.daemon for t in threads)
    finally:
        gate.set()
        manager.stop()
