"""Auth's transactional paths under contention: 8 contenders per document, released by a barrier, on the session's
Firestore emulator (Google's, whenever it is the one in use; its lock timeouts are what make contention real).

Each test asserts its path's invariant, whatever the interleaving: one winner for a single-use document (OAuth
state, one-time code, WebSocket ticket), one rotation per refresh token and a reused token that revokes its
family, no lost increment for rate-limit counters. A contender may also lose with TransactionContention (503,
nothing applied) when the retry budget runs out; nothing else (never the library's ValueError, a 500).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from functions.auth.store import CODES, FAMILIES, REFRESH_TOKENS, STATES, TICKETS, AuthStore, digest, new_secret
from shared.firestore import TransactionContention, collection_name
from tests.fixtures.auth import AuthService

CONTENDERS = 8
T = TypeVar("T")


def race(fn: Callable[[], T], contenders: int = CONTENDERS) -> list[T | TransactionContention]:
    """``fn`` run by ``contenders`` threads released together; each result, or the TransactionContention it
    raised. Any other exception fails the test."""
    barrier = threading.Barrier(contenders)

    def one(_: int) -> T | TransactionContention:
        barrier.wait(30)
        try:
            return fn()
        except TransactionContention as exc:
            return exc

    with ThreadPoolExecutor(contenders) as pool:
        return list(pool.map(one, range(contenders)))


@pytest.mark.parametrize("kind", [STATES, CODES, TICKETS])
def test_single_use_document_has_exactly_one_taker(firestore_client: Any, kind: str) -> None:
    store = AuthStore()
    secret = new_secret()
    store.put(kind, secret, {"user_id": "u1"}, ttl_s=60)
    results = race(lambda: store.take(kind, secret))
    winners = [r for r in results if isinstance(r, dict)]
    assert len(winners) == 1 and winners[0]["user_id"] == "u1", results
    assert all(r is None or isinstance(r, TransactionContention) for r in results if r is not winners[0]), results
    assert not firestore_client.collection(collection_name(kind)).document(digest(secret)).get().exists
    assert store.take(kind, secret) is None, "taken means gone"


def test_scenario_21_racing_rotations_one_wins_and_the_reuse_revokes_the_family(firestore_client: Any) -> None:
    """Scenario 21 at 8 contenders: exactly one rotation succeeds; every other one sees the reuse (or a family
    already revoked for it), and the family ends revoked for reuse, so the winner's new token is refused too.
    A contender that ran out of budget (503) retries after its Retry-After, as a client does."""
    store = AuthStore()
    family_id, token = store.start_family("u-race", ttl_s=600)
    results: list[Any] = race(lambda: store.rotate(token, ttl_s=600))
    for index, result in enumerate(results):
        if isinstance(result, TransactionContention):
            time.sleep(result.retry_after)
            results[index] = store.rotate(token, ttl_s=600)
    outcomes = sorted(r.outcome for r in results)
    assert outcomes.count("ok") == 1, outcomes
    assert set(outcomes) - {"ok"} <= {"reuse", "revoked"} and "reuse" in outcomes, outcomes
    family = store.family(family_id)
    assert family is not None and family["revoked_at"] is not None and family["revoked_reason"] == "reuse"
    successor = next(r.refresh_token for r in results if r.outcome == "ok")
    assert store.rotate(successor, ttl_s=600).outcome == "revoked"
    used = firestore_client.collection(collection_name(REFRESH_TOKENS)).document(digest(token)).get()
    assert used.get("used_at") is not None
    tokens = (
        firestore_client.collection(collection_name(REFRESH_TOKENS))
        .where(filter=FieldFilter("family_id", "==", family_id))
        .get()
    )
    assert len(tokens) == 2, "one successor only: no losing attempt left a token behind"
    assert firestore_client.collection(collection_name(FAMILIES)).document(family_id).get().exists


def test_scenario_21_rotations_racing_across_two_processes(
    auth_service_session: AuthService, firestore_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario 21 between instances: 4 refreshes over HTTP (the auth process) and 4 rotations from this process
    race on one token, so the two processes' transactions contend in Firestore itself and the retries resolve it:
    one success, every other answer a reuse/revoked refusal or a 503 transaction_contention with Retry-After
    (never a 500), and the family ends revoked."""
    monkeypatch.setenv("FIRESTORE_COLLECTION_PREFIX", auth_service_session.firestore_prefix)
    url = auth_service_session.url
    tokens = auth_service_session.login("contended@example.com")
    store = AuthStore()
    family_id = store.family_of(tokens["refresh_token"])
    counter = iter(range(CONTENDERS))
    lock = threading.Lock()

    def contender() -> str:
        with lock:
            over_http = next(counter) % 2 == 0
        if over_http:
            response = httpx.post(f"{url}/auth/refresh", json={"refresh_token": tokens["refresh_token"]}, timeout=60)
            if response.status_code == 503:
                assert response.headers["Retry-After"] == "1"
            return "ok" if response.status_code == 200 else response.json()["error"]["code"]
        return store.rotate(tokens["refresh_token"], ttl_s=600).outcome

    results = [r.code if isinstance(r, TransactionContention) else r for r in race(contender)]
    assert results.count("ok") == 1, results
    refusals = {"reuse", "revoked", "reuse_detected", "session_revoked", "transaction_contention"}
    assert set(results) - {"ok"} <= refusals, results
    if not set(results) & {"reuse", "reuse_detected"}:  # every reuse attempt ran out of budget: present it again
        assert store.rotate(tokens["refresh_token"], ttl_s=600).outcome == "reuse"
    family = store.family(family_id or "")
    assert family is not None and family["revoked_reason"] == "reuse", results


def test_rate_limit_counter_loses_no_increment(firestore_client: Any) -> None:
    """8 instances' hits on one bucket at once, 5 each: every increment is counted once (the totals returned are
    exactly 1..40 and the document ends at 40)."""
    from shared.ratelimit import FirestoreCounterStore

    counters = FirestoreCounterStore()
    expires = datetime.now(UTC) + timedelta(minutes=5)
    totals = race(lambda: [counters.increment("login-contended-1", 1, expires) for _ in range(5)])
    seen = sorted(total for batch in totals for total in batch)  # type: ignore[union-attr]
    assert seen == list(range(1, CONTENDERS * 5 + 1))
    doc = firestore_client.collection(collection_name("rate_limits")).document("login-contended-1").get()
    assert doc.get("count") == CONTENDERS * 5
