"""shared.timeout.call_with_timeout: the one way a blocking call gets a time limit (startup attempts, runs)."""

from __future__ import annotations

import contextvars
import threading

import pytest

from shared.timeout import CallTimedOut, call_with_timeout

who = contextvars.ContextVar("who", default="nobody")


def test_returns_the_value_on_a_thread_that_sees_the_callers_context() -> None:
    who.set("caller")
    seen = call_with_timeout(lambda: (who.get(), threading.current_thread().name), 1.0, "probe", "probe-thread")
    assert seen == ("caller", "probe-thread")


def test_raises_the_calls_own_exception_in_the_caller() -> None:
    def fails() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        call_with_timeout(fails, 1.0, "probe", "probe-thread")


def test_a_call_past_its_limit_is_a_timeout_naming_it_and_keeps_running() -> None:
    release = threading.Event()
    finished = threading.Event()

    def hangs() -> None:
        release.wait(5)
        finished.set()

    with pytest.raises(CallTimedOut, match=r"^start of 'peer' took longer than 0.05s$") as info:
        call_with_timeout(hangs, 0.05, "start of 'peer'", "probe-thread")
    assert isinstance(info.value, TimeoutError)  # shared.startup.failure_reason reports it as "timeout"
    release.set()
    assert finished.wait(2)  # the thread was not abandoned mid-call: it ran to its end
