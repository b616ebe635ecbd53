"""Conformance of the project's own Firestore emulator for every operation the project uses.

Runs the unmodified google-cloud-firestore client against both implementations in the same run: Google's
emulator (``[official]``) is the reference, the npm one (``[own]``) must behave the same. A test that passes
on ours and fails on Google's is a bug in ours or in the test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from google.api_core.exceptions import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from google.cloud import firestore
from google.cloud.firestore import Client
from google.cloud.firestore_v1.base_query import FieldFilter

from emulators.implementation import OFFICIAL, OWN
from shared.firestore import TTL_FIELD, collection_name, run_transaction, ttl_expiry
from tests.fixtures.emulators import EmulatorPool, skip_unless_available


@pytest.fixture(params=[OFFICIAL, OWN])
def firestore_client(
    request: pytest.FixtureRequest, emulator_pool: EmulatorPool, firestore_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Client]:
    """The shared client (shared.firestore.get_client) on the session's emulator of each implementation."""
    from shared.firestore import get_client, reset_client

    skip_unless_available(request.param)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulator_pool.host("firestore", request.param))
    reset_client()
    yield get_client()
    reset_client()


def col(client: Client, name: str) -> firestore.CollectionReference:
    return client.collection(collection_name(name))


# -- documents -----------------------------------------------------------------------------------------


def test_set_get_update_delete(firestore_client: Client) -> None:
    ref = col(firestore_client, "docs").document("d1")
    assert not ref.get().exists

    ref.set({"a": 1, "b": "x", "nested": {"k": 1, "keep": True}})
    snap = ref.get()
    assert snap.exists and snap.id == "d1"
    assert snap.to_dict() == {"a": 1, "b": "x", "nested": {"k": 1, "keep": True}}
    assert snap.create_time is not None and snap.update_time is not None

    ref.update({"a": 2, "nested.k": 5, "b": firestore.DELETE_FIELD})
    assert ref.get().to_dict() == {"a": 2, "nested": {"k": 5, "keep": True}}

    ref.set({"c": 3}, merge=True)
    assert ref.get().to_dict() == {"a": 2, "c": 3, "nested": {"k": 5, "keep": True}}

    # set() without merge replaces the whole document.
    ref.set({"only": True})
    assert ref.get().to_dict() == {"only": True}

    ref.delete()
    assert not ref.get().exists
    ref.delete()  # deleting a missing document is not an error

    with pytest.raises(NotFound):
        ref.update({"a": 1})


def test_create_raises_already_exists_and_keeps_the_first(firestore_client: Client) -> None:
    """The idempotency-record primitive: the second create() of the same key fails, the first stays."""
    ref = col(firestore_client, "idempotency").document("key-1")
    ref.create({"owner": "first"})
    with pytest.raises(AlreadyExists):
        ref.create({"owner": "second"})
    assert ref.get().to_dict() == {"owner": "first"}


def test_an_array_directly_in_an_array_is_refused(firestore_client: Client) -> None:
    """Firestore refuses it (INVALID_ARGUMENT) and writes nothing; an array in a map in an array is fine."""
    ref = col(firestore_client, "docs").document("nested")
    with pytest.raises(InvalidArgument, match="array value in an array value"):
        ref.set({"rows": [["a", 1], ["b", 2]]})
    assert not ref.get().exists
    ref.set({"rows": [{"cells": ["a", 1]}]})
    assert ref.get().to_dict() == {"rows": [{"cells": ["a", 1]}]}


def test_update_time_precondition(firestore_client: Client) -> None:
    ref = col(firestore_client, "docs").document("guarded")
    ref.set({"v": 1})
    seen = ref.get().update_time
    ref.update({"v": 2}, option=firestore_client.write_option(last_update_time=seen))
    with pytest.raises(FailedPrecondition):
        ref.update({"v": 3}, option=firestore_client.write_option(last_update_time=seen))
    assert ref.get().to_dict() == {"v": 2}


def test_batch_get_returns_found_and_missing(firestore_client: Client) -> None:
    c = col(firestore_client, "many")
    c.document("a").set({"n": 1})
    c.document("b").set({"n": 2})
    snaps = {s.id: s for s in firestore_client.get_all([c.document("a"), c.document("b"), c.document("zz")])}
    assert snaps["a"].to_dict() == {"n": 1} and snaps["b"].to_dict() == {"n": 2}
    assert not snaps["zz"].exists
    c.document("wide").set({"keep": 1, "drop": 2})
    assert c.document("wide").get(field_paths=["keep"]).to_dict() == {"keep": 1}


# -- transactions ----------------------------------------------------------------------------------------


def test_transaction_read_modify_write(firestore_client: Client) -> None:
    ref = col(firestore_client, "counters").document("single")
    ref.set({"n": 10})

    @firestore.transactional
    def bump(transaction: firestore.Transaction) -> int:
        value = ref.get(transaction=transaction).get("n") + 5
        transaction.update(ref, {"n": value})
        return value

    assert bump(firestore_client.transaction()) == 15
    assert ref.get().get("n") == 15


def test_transaction_error_rolls_back(firestore_client: Client) -> None:
    ref = col(firestore_client, "counters").document("rollback")
    ref.set({"n": 1})

    @firestore.transactional
    def failing(transaction: firestore.Transaction) -> None:
        ref.get(transaction=transaction)
        transaction.update(ref, {"n": 99})
        raise RuntimeError("business rule failed")

    with pytest.raises(RuntimeError):
        failing(firestore_client.transaction())
    assert ref.get().get("n") == 1
    # The lock it held is released: another transaction on the same document goes through at once.
    other = firestore_client.transaction()

    @firestore.transactional
    def ok(transaction: firestore.Transaction) -> None:
        transaction.update(ref, {"n": ref.get(transaction=transaction).get("n") + 1})

    ok(other)
    assert ref.get().get("n") == 2


def test_concurrent_transactions_never_lose_an_increment(firestore_client: Client) -> None:
    """8 threads x 5 read-modify-write transactions on one document end at exactly 40, through the platform's
    own transaction runner (shared.firestore.run_transaction: same-document transactions of one process one at a
    time, backoff with jitter). The library's bare @transactional fails this on Google's emulator ("Failed to
    commit transaction in 5 attempts"), which livelocks same-process contenders (see run_transaction)."""
    ref = col(firestore_client, "counters").document("shared")
    ref.set({"n": 0})
    attempts: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def increment(transaction: firestore.Transaction) -> None:
        attempts.append(1)
        current = ref.get(transaction=transaction).get("n")
        transaction.update(ref, {"n": current + 1})

    def worker() -> None:
        try:
            start.wait(10)
            for _ in range(5):
                run_transaction(increment, "counter", budget_s=60, key=ref.path)
        except BaseException as exc:  # reported below; a thread must not swallow it
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert ref.get().get("n") == 40
    print(f"40 increments took {len(attempts)} attempts")


def test_racing_transactions_one_wins_and_the_reuse_is_detected(firestore_client: Client) -> None:
    """Scenario 21 (storage side): two consumers of one single-use record race; exactly one wins."""
    ref = col(firestore_client, "refresh_families").document("family-1")
    ref.set({"current": "token-a", "used": False})
    start = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def consume(transaction: firestore.Transaction, who: str) -> str:
        snap = ref.get(transaction=transaction)
        if snap.get("used"):
            return "reuse-detected"
        transaction.update(ref, {"used": True, "used_by": who})
        return "won"

    def racer(who: str) -> None:
        start.wait(10)
        outcomes[who] = run_transaction(lambda transaction: consume(transaction, who), "family")

    threads = [threading.Thread(target=racer, args=(w,)) for w in ("x", "y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes.values()) == ["reuse-detected", "won"]
    winner = next(w for w, o in outcomes.items() if o == "won")
    assert ref.get().to_dict() == {"current": "token-a", "used": True, "used_by": winner}


def test_plain_write_during_a_transaction_stays_serializable(firestore_client: Client) -> None:
    """A plain write racing a read-modify-write transaction never makes its increment vanish."""
    ref = col(firestore_client, "counters").document("conflict")
    ref.set({"n": 1})
    calls: list[int] = []
    writers: list[threading.Thread] = []

    @firestore.transactional
    def bump(transaction: firestore.Transaction) -> None:
        current = ref.get(transaction=transaction).get("n")
        calls.append(current)
        if not writers:
            # Another instance writes the document while we hold it. Firestore makes that write wait for
            # our commit; an emulator may instead let it in and abort us, and we retry on the new value.
            writer = threading.Thread(target=lambda: ref.update({"n": 100}))
            writers.append(writer)
            writer.start()
            writer.join(0.3)
        transaction.update(ref, {"n": current + 1})

    bump(firestore_client.transaction())
    writers[0].join(30)
    assert not writers[0].is_alive()
    final = ref.get().get("n")
    assert (calls, final) in [([1], 100), ([1, 100], 101)]


def test_read_only_transaction_takes_no_locks(firestore_client: Client) -> None:
    ref = col(firestore_client, "counters").document("read-only")
    ref.set({"n": 1})

    @firestore.transactional
    def read_then_write_elsewhere(transaction: firestore.Transaction) -> int:
        value = ref.get(transaction=transaction).get("n")
        ref.update({"n": value + 1})  # would wait for our lock if a read-only transaction took one
        return value

    assert read_then_write_elsewhere(firestore_client.transaction(read_only=True)) == 1
    assert ref.get().get("n") == 2


def test_transactional_query_read(firestore_client: Client) -> None:
    c = col(firestore_client, "slots")
    for i in range(3):
        c.document(f"s{i}").set({"free": True, "i": i})

    @firestore.transactional
    def claim(transaction: firestore.Transaction) -> str:
        query = c.where(filter=FieldFilter("free", "==", True)).order_by("i").limit(1)
        snap = next(iter(query.get(transaction=transaction)))
        transaction.update(snap.reference, {"free": False})
        return snap.id

    assert [claim(firestore_client.transaction()) for _ in range(3)] == ["s0", "s1", "s2"]


# -- queries ---------------------------------------------------------------------------------------------


def _seed_messages(client: Client) -> firestore.CollectionReference:
    c = col(client, "messages")
    batch = client.batch()
    for i in range(12):
        batch.set(c.document(f"m{i:02d}"), {"seq": i, "thread": "t1" if i % 3 else "t2", "score": i * 1.5})
    batch.commit()
    return c


def test_where_order_by_limit(firestore_client: Client) -> None:
    c = _seed_messages(firestore_client)
    q = c.where(filter=FieldFilter("thread", "==", "t1")).order_by("seq", direction=firestore.Query.DESCENDING)
    assert [s.get("seq") for s in q.limit(3).stream()] == [11, 10, 8]
    ranged = c.where(filter=FieldFilter("seq", ">", 3)).where(filter=FieldFilter("seq", "<=", 6))
    assert [s.get("seq") for s in ranged.order_by("seq").stream()] == [4, 5, 6]
    assert [s.id for s in c.where(filter=FieldFilter("seq", "in", [2, 7])).stream()] == ["m02", "m07"]
    # Without order_by, results come in document-name order.
    assert [s.id for s in c.limit(2).stream()] == ["m00", "m01"]
    assert c.where(filter=FieldFilter("thread", "==", "t1")).count().get()[0][0].value == 8


def test_pagination_with_start_after(firestore_client: Client) -> None:
    c = _seed_messages(firestore_client)
    base = c.where(filter=FieldFilter("thread", "==", "t1")).order_by("seq")
    pages: list[list[int]] = []
    last = None
    for _ in range(10):  # bounded: an emulator that ignores the cursor must fail, not loop forever
        q = base.limit(3) if last is None else base.start_after(last).limit(3)
        page = list(q.stream())
        if not page:
            break
        pages.append([s.get("seq") for s in page])
        last = page[-1]
    assert pages == [[1, 2, 4], [5, 7, 8], [10, 11]]
    # A field-value cursor, as the event replay uses with the last sequence a client saw.
    assert [s.get("seq") for s in c.order_by("seq").start_after({"seq": 9}).stream()] == [10, 11]
    assert [s.get("seq") for s in c.order_by("seq").start_at({"seq": 10}).end_before({"seq": 11}).stream()] == [10]


def test_missing_fields_and_null_filters(firestore_client: Client) -> None:
    c = col(firestore_client, "sparse")
    c.document("a").set({"v": 1})
    c.document("b").set({"v": None})
    c.document("c").set({"other": True})
    assert [s.id for s in c.where(filter=FieldFilter("v", "==", None)).stream()] == ["b"]
    # Documents without the ordered field are not part of an ordered query.
    assert [s.id for s in c.order_by("v").stream()] == ["b", "a"]


# -- subcollections -------------------------------------------------------------------------------------


def test_run_events_subcollection_ordered_by_seq(firestore_client: Client) -> None:
    runs = col(firestore_client, "runs")
    events = runs.document("run-1").collection("events")
    for seq in (3, 1, 10, 2):  # out of order, and ids that sort differently as strings
        events.document(str(seq)).set({"seq": seq, "type": "partial_result"})
    runs.document("run-2").collection("events").document("1").set({"seq": 1, "type": "other-run"})

    ordered = [s.get("seq") for s in events.order_by("seq").stream()]
    assert ordered == [1, 2, 3, 10]
    assert [s.get("seq") for s in events.where(filter=FieldFilter("seq", ">", 2)).order_by("seq").stream()] == [3, 10]
    assert not runs.document("run-1").get().exists  # a parent needs no document of its own
    assert sorted(d.id for d in events.list_documents()) == ["1", "10", "2", "3"]


def test_collection_group_query(firestore_client: Client) -> None:
    runs = col(firestore_client, "cg_runs")
    name = collection_name("cg_events")
    runs.document("r1").collection(name).document("1").set({"seq": 1, "kind": "error"})
    runs.document("r2").collection(name).document("1").set({"seq": 1, "kind": "ok"})
    runs.document("r2").collection(name).document("2").set({"seq": 2, "kind": "error"})
    found = firestore_client.collection_group(name).where(filter=FieldFilter("kind", "==", "error")).stream()
    assert sorted(s.reference.path.split("/", 1)[1] for s in found) == [f"r1/{name}/1", f"r2/{name}/2"]


# -- field values ----------------------------------------------------------------------------------------


def test_ttl_field_round_trips_as_datetime(firestore_client: Client) -> None:
    c = col(firestore_client, "oauth_state")
    before = datetime.now(UTC)
    c.document("live").set({TTL_FIELD: ttl_expiry(600), "verifier": "v1"})
    c.document("expired").set({TTL_FIELD: before - timedelta(seconds=5), "verifier": "v0"})

    value = c.document("live").get().get(TTL_FIELD)
    assert isinstance(value, datetime) and value.tzinfo is not None
    assert timedelta(seconds=590) < value - before < timedelta(seconds=610)
    expired = c.where(filter=FieldFilter(TTL_FIELD, "<", datetime.now(UTC))).stream()
    assert [s.id for s in expired] == ["expired"]


def test_increment_transforms(firestore_client: Client) -> None:
    ref = col(firestore_client, "buckets").document("user-1")
    ref.set({"tokens": 5, "label": "x"})
    for _ in range(3):
        ref.update({"tokens": firestore.Increment(1)})
    ref.update({"spent": firestore.Increment(2.5), "stats.calls": firestore.Increment(1)})
    ref.set({"tokens": firestore.Increment(-2)}, merge=True)
    assert ref.get().to_dict() == {"tokens": 6, "label": "x", "spent": 2.5, "stats": {"calls": 1}}


def test_server_timestamp_with_other_transforms(firestore_client: Client) -> None:
    ref = col(firestore_client, "buckets").document("ts")
    before = datetime.now(UTC) - timedelta(seconds=1)
    result = ref.set({"at": firestore.SERVER_TIMESTAMP, "n": firestore.Increment(1), "z": firestore.SERVER_TIMESTAMP})
    data = ref.get().to_dict()
    assert data["n"] == 1
    assert isinstance(data["at"], datetime) and before < data["at"] < datetime.now(UTC) + timedelta(seconds=1)
    assert data["z"] == data["at"]
    assert result.update_time is not None


def test_array_transforms(firestore_client: Client) -> None:
    ref = col(firestore_client, "docs").document("arrays")
    ref.set({"tags": ["a"]})
    ref.update({"tags": firestore.ArrayUnion(["b", "a", "c"])})
    ref.update({"tags": firestore.ArrayRemove(["a"])})
    assert ref.get().get("tags") == ["b", "c"]


# -- batches ---------------------------------------------------------------------------------------------


def test_write_batch_commits_all(firestore_client: Client) -> None:
    c = col(firestore_client, "batch")
    c.document("gone").set({"x": 1})
    c.document("upd").set({"x": 1})
    batch = firestore_client.batch()
    batch.set(c.document("new1"), {"x": 1})
    batch.set(c.document("new2"), {"x": 2})
    batch.update(c.document("upd"), {"x": firestore.Increment(10)})
    batch.delete(c.document("gone"))
    results = batch.commit()
    assert len(results) == 4
    assert {s.id: s.to_dict() for s in c.stream()} == {"new1": {"x": 1}, "new2": {"x": 2}, "upd": {"x": 11}}


def test_write_batch_is_atomic(firestore_client: Client) -> None:
    c = col(firestore_client, "batch_atomic")
    c.document("exists").set({"x": 1})
    batch = firestore_client.batch()
    batch.set(c.document("would-be-new"), {"x": 1})
    batch.create(c.document("exists"), {"x": 2})
    with pytest.raises(AlreadyExists):
        batch.commit()
    assert not c.document("would-be-new").get().exists
    assert c.document("exists").get().to_dict() == {"x": 1}


def test_many_writers_do_not_interfere(firestore_client: Client) -> None:
    """Plain writes from several threads on separate documents all land (the client is shared)."""
    c = col(firestore_client, "parallel")

    def writer(n: int) -> None:
        for i in range(10):
            c.document(f"w{n}-{i}").set({"n": n, "i": i, "at": time.time()})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert c.count().get()[0][0].value == 40
