"""The startup manager: ordering, parallelism, retries, breakers, degraded mode, health bodies."""

from __future__ import annotations

import threading
import time

import pytest

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
)

FAST = RetryPolicy(initial_s=0.01, max_s=0.05)


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
    now["t"] = 10.5
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow(), "one trial goes through when half open"
    assert not breaker.allow(), "only one trial at a time"
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN, "a failed trial reopens the breaker"
    now["t"] = 21
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


def test_backoff_has_jitter_and_bounds() -> None:
    policy = RetryPolicy(initial_s=1, max_s=30)
    delays = [policy.delay(8) for _ in range(200)]
    assert max(delays) <= 30 and min(delays) >= 0.5
    assert len({round(d, 3) for d in delays}) > 150, "delays must be spread (jitter)"
    assert all(policy.delay(1) <= 1 for _ in range(50))


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
