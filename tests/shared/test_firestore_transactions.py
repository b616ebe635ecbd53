"""shared.firestore.run_transaction, the one retry of every transactional path: backoff on contention within a
time budget, then 503 transaction_contention with nothing applied; no retry of other errors; bounded calls."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from google.api_core.exceptions import Aborted

import shared.firestore as shared_fs
from shared.firestore import TransactionContention, collection_name, reset_client, run_transaction


def doc(client: Any, name: str) -> Any:
    return client.collection(collection_name("tx")).document(name)


def test_contention_past_the_budget_is_a_503_and_applies_nothing(firestore_client: Any) -> None:
    ref = doc(firestore_client, "always-contended")
    ref.set({"n": 0})
    attempts: list[float] = []

    def body(tx: Any) -> None:
        attempts.append(time.monotonic())
        ref.get(transaction=tx)
        tx.update(ref, {"n": 1})
        raise Aborted("simulated: lost to a concurrent transaction")

    started = time.monotonic()
    with pytest.raises(TransactionContention) as info:
        run_transaction(body, "test document", budget_s=1.5)
    elapsed = time.monotonic() - started
    assert len(attempts) >= 3, "retried"
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert len(set(round(g, 3) for g in gaps)) > 1, "jittered backoff, not a fixed delay"
    assert elapsed < 1.5 + shared_fs.TRANSACTION_RPC_TIMEOUT_S, "bounded by the budget"
    err = info.value
    assert err.status == 503 and err.code == "transaction_contention" and err.headers["Retry-After"] == "1"
    assert err.body()["error"]["message"].startswith("too many concurrent changes to the same test document")
    assert isinstance(err.__cause__, Aborted)
    assert ref.get().to_dict() == {"n": 0}, "no attempt applied anything"


def test_a_lost_race_is_retried_until_it_commits_once(firestore_client: Any) -> None:
    ref = doc(firestore_client, "contended-twice")
    ref.set({"n": 0})
    calls = []

    def body(tx: Any) -> int:
        calls.append(1)
        current = ref.get(transaction=tx).get("n")
        tx.update(ref, {"n": current + 1})
        if len(calls) <= 2:
            raise Aborted("simulated")
        return current + 1

    assert run_transaction(body, "test document") == 1
    assert len(calls) == 3 and ref.get().get("n") == 1


def test_other_errors_are_not_retried_and_roll_back(firestore_client: Any) -> None:
    ref = doc(firestore_client, "bad-body")
    ref.set({"n": 0})
    calls = []

    def body(tx: Any) -> None:
        calls.append(1)
        ref.get(transaction=tx)
        tx.update(ref, {"n": 5})
        raise KeyError("a bug in the body")

    with pytest.raises(KeyError):
        run_transaction(body, "test document")
    assert calls == [1] and ref.get().get("n") == 0
    # The rolled-back attempt holds no lock: a plain write goes through at once.
    ref.set({"n": 2})
    assert ref.get().get("n") == 2


def test_an_unreachable_firestore_ends_the_transaction_within_its_call_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """The library's begin/commit carry no deadline (about a minute of retries against a closed port); ours end
    within TRANSACTION_RPC_TIMEOUT_S, and the error is a transient one the HTTP layer answers 503."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the with ends: nothing listens there
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{port}")
    monkeypatch.setattr(shared_fs, "TRANSACTION_RPC_TIMEOUT_S", 1.0)
    reset_client()
    try:
        started = time.monotonic()
        with pytest.raises(Exception) as info:
            run_transaction(lambda tx: None, "test document")
        elapsed = time.monotonic() - started
    finally:
        reset_client()
    assert elapsed < 5, elapsed
    from shared.errors import transient_dependency_error

    assert transient_dependency_error(info.value) is not None, repr(info.value)
