"""Behaviour of our own emulator (server.cjs) beyond Firestore conformance: lock leases, clear errors."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import grpc
import pytest
from google.api_core.exceptions import Aborted, InvalidArgument, MethodNotImplemented
from google.cloud import firestore
from google.cloud.firestore_v1.services.firestore import FirestoreClient
from google.cloud.firestore_v1.services.firestore.transports import FirestoreGrpcTransport

from emulators.firestore.launcher import FirestoreEmulator, start_firestore
from emulators.implementation import OWN

PROJECT = "server-test"
DATABASE = f"projects/{PROJECT}/databases/(default)"


@pytest.fixture(scope="module")
def npm_emulator() -> Iterator[FirestoreEmulator]:
    emulator = start_firestore("127.0.0.1", 0, kind=OWN)
    yield emulator
    emulator.stop()


@pytest.fixture
def client(npm_emulator: FirestoreEmulator, monkeypatch: pytest.MonkeyPatch) -> firestore.Client:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", npm_emulator.address)
    return firestore.Client(project=PROJECT)


@pytest.fixture
def gapic(npm_emulator: FirestoreEmulator) -> Iterator[FirestoreClient]:
    channel = grpc.insecure_channel(npm_emulator.address)
    yield FirestoreClient(transport=FirestoreGrpcTransport(channel=channel))
    channel.close()


def test_abandoned_transaction_loses_its_lock_after_the_lease(client: firestore.Client) -> None:
    """An instance that dies holding a transaction's lock: others get the document after the 5 s lease
    (Firestore itself expires idle transactions after about 60 s)."""
    ref = client.collection(f"c{uuid.uuid4().hex[:8]}").document("abandoned")
    ref.set({"n": 1})
    abandoned = client.transaction()
    abandoned._begin()  # private API: the public one cannot leave a transaction open on purpose
    assert ref.get(transaction=abandoned).get("n") == 1

    @firestore.transactional
    def bump(transaction: firestore.Transaction) -> None:
        transaction.update(ref, {"n": ref.get(transaction=transaction).get("n") + 1})

    bump(client.transaction())
    assert ref.get().get("n") == 2
    abandoned.update(ref, {"n": 50})
    with pytest.raises(Aborted):
        abandoned._commit()
    assert ref.get().get("n") == 2


def test_plain_write_waits_for_the_transaction_holding_the_document(client: firestore.Client) -> None:
    """Firestore blocks writes to a document a transaction has read until it ends; so do we."""
    ref = client.collection(f"c{uuid.uuid4().hex[:8]}").document("held")
    ref.set({"n": 1})
    transaction = client.transaction()
    transaction._begin()
    ref.get(transaction=transaction)
    writer = threading.Thread(target=lambda: ref.update({"n": 100}))
    writer.start()
    writer.join(0.5)
    assert writer.is_alive(), "the plain write should wait for the transaction's lock"
    transaction.update(ref, {"n": 2})
    transaction._commit()
    writer.join(10)
    assert not writer.is_alive()
    assert ref.get().get("n") == 100


def test_unsupported_rpc_is_a_clean_error_and_the_server_survives(
    gapic: FirestoreClient, client: firestore.Client
) -> None:
    with pytest.raises(MethodNotImplemented) as info:
        gapic.create_document(
            request={"parent": f"{DATABASE}/documents", "collection_id": "c", "document_id": "d", "document": {}}
        )
    assert "not supported by this emulator" in str(info.value)
    assert not client.collection("c").document("d").get().exists


def test_invalid_document_path_is_invalid_argument(gapic: FirestoreClient) -> None:
    with pytest.raises(InvalidArgument) as info:
        list(
            gapic.batch_get_documents(
                request={"database": DATABASE, "documents": [f"{DATABASE}/documents/only-a-collection"]}
            )
        )
    assert "invalid document path" in str(info.value)


def test_unknown_transaction_is_invalid_argument(gapic: FirestoreClient) -> None:
    with pytest.raises(InvalidArgument):
        gapic.commit(request={"database": DATABASE, "transaction": b"no-such-transaction", "writes": []})


def test_snapshot_listener_sees_documents_written_here(client: firestore.Client) -> None:
    """Listen is upstream's code; it must keep working on documents stored by our write path."""
    ref = client.collection(f"c{uuid.uuid4().hex[:8]}").document("watched")
    ref.set({"n": 1})
    seen: list[int] = []
    changed = threading.Event()

    def on_snapshot(snapshots: list[firestore.DocumentSnapshot], *_: object) -> None:
        for snap in snapshots:
            if snap.exists:
                seen.append(snap.get("n"))
                if snap.get("n") == 2:
                    changed.set()

    watch = ref.on_snapshot(on_snapshot)
    try:
        ref.update({"n": 2})
        assert changed.wait(15)
    finally:
        watch.unsubscribe()
    assert seen[-1] == 2
