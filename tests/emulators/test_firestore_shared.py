"""shared.firestore: one lazy client per process, configuration errors, TTL and naming helpers."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest

from shared import firestore as shared_fs
from shared.config import REPO_ROOT
from shared.firestore import FirestoreSetupError, collection_name, get_client, reset_client, ttl_expiry


@pytest.fixture(autouse=True)
def _fresh_client() -> object:
    reset_client()
    yield
    reset_client()


def test_import_does_not_load_the_firestore_library() -> None:
    """Cold-start rule: the library loads on the first get_client(), not when a service imports shared."""
    code = (
        "import sys, shared.firestore as f; before = 'google.cloud.firestore' in sys.modules; "
        "f.get_client(); print(before, 'google.cloud.firestore' in sys.modules)"
    )
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9", "GOOGLE_CLOUD_PROJECT": "p"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert out == ["False", "True"]


def test_one_client_for_all_threads(firestore_emulator_host: str) -> None:
    """Many first requests at once on a fresh instance create the client once (like scenario 2's pool)."""
    barrier = threading.Barrier(16)
    seen: list[int] = []

    def first_request() -> None:
        barrier.wait(10)
        seen.append(id(get_client()))

    threads = [threading.Thread(target=first_request) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(seen) == 16 and len(set(seen)) == 1
    assert id(get_client()) == seen[0]


def test_client_uses_the_emulator_and_project(
    firestore_emulator_host: str, firestore_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "netra-shared-test")
    client = get_client()
    assert client.project == "netra-shared-test"
    ref = client.collection(collection_name("shared")).document("d")
    ref.set({"v": 1})
    assert ref.path == f"{firestore_prefix}shared/d"

    # A separate client on the same emulator and project sees the write: it went to the emulator.
    from google.cloud import firestore

    other = firestore.Client(project="netra-shared-test")
    assert other.collection(f"{firestore_prefix}shared").document("d").get().to_dict() == {"v": 1}


def test_default_project(firestore_emulator_host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    assert get_client().project == "netra-local"


def test_reset_client_makes_a_new_one(firestore_emulator_host: str) -> None:
    first = get_client()
    first.collection("reset").document("x").get()  # opens its channel
    reset_client()
    second = get_client()
    assert second is not first
    assert not second.collection("reset").document("x").get().exists


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:", "127.0.0.1:99999", "http://127.0.0.1:8080"])
def test_bad_emulator_host_is_a_clear_error(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", host)
    with pytest.raises(FirestoreSetupError) as info:
        get_client()
    assert info.value.code == "invalid_emulator_host"
    assert "FIRESTORE_EMULATOR_HOST" in info.value.message
    assert shared_fs._client is None


def test_bad_project_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "projects/x")
    with pytest.raises(FirestoreSetupError) as info:
        get_client()
    assert info.value.code == "invalid_project"


def test_ttl_expiry() -> None:
    before = datetime.now(UTC)
    value = ttl_expiry(90)
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
    assert before + timedelta(seconds=90) <= value <= datetime.now(UTC) + timedelta(seconds=90)
    assert ttl_expiry(0.5) > before
    assert shared_fs.TTL_FIELD == "expires_at"


@pytest.mark.parametrize("bad", [0, -5, math.inf, math.nan, "60", True, None])
def test_ttl_expiry_rejects_bad_input(bad: object) -> None:
    with pytest.raises(FirestoreSetupError) as info:
        ttl_expiry(bad)  # type: ignore[arg-type]
    assert info.value.code == "invalid_ttl"


def test_collection_name_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIRESTORE_COLLECTION_PREFIX", raising=False)
    assert collection_name("oauth_state") == "oauth_state"
    monkeypatch.setenv("FIRESTORE_COLLECTION_PREFIX", "test42_")
    assert collection_name("oauth_state") == "test42_oauth_state"
    monkeypatch.setenv("FIRESTORE_COLLECTION_PREFIX", "a/b")
    with pytest.raises(FirestoreSetupError) as info:
        collection_name("runs")
    assert info.value.code == "invalid_collection_prefix"


@pytest.mark.parametrize("bad", ["", "runs/x", "__reserved__", None])
def test_collection_name_rejects_bad_names(bad: object) -> None:
    with pytest.raises(FirestoreSetupError) as info:
        collection_name(bad)  # type: ignore[arg-type]
    assert info.value.code == "invalid_collection_name"
