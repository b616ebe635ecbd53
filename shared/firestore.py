"""Firestore access shared by every service: one lazily created client per process, and naming helpers.

Cold-start rule: importing this module does not import google.cloud.firestore; the first ``get_client()``
does, and every later call (from any thread) returns the same client.

Environment:
- ``GOOGLE_CLOUD_PROJECT``: project id (default ``netra-local``).
- ``FIRESTORE_EMULATOR_HOST``: ``host:port`` of a local emulator; the client then talks plain gRPC to it
  with anonymous credentials.
- ``FIRESTORE_COLLECTION_PREFIX``: prepended to every collection name by :func:`collection_name`, so that
  tests (or several developers on one emulator) can keep their documents apart. Default empty.

TTL: a document that should expire carries a timestamp field named ``expires_at`` (:data:`TTL_FIELD`),
written with :func:`ttl_expiry`. Firestore's TTL policy on that field (set in terraform per collection group)
deletes the document some time after that instant (typically within 24 hours), so readers must still treat
a document whose ``expires_at`` is in the past as absent. Emulators never delete expired documents.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from shared.errors import NetraError, ServiceUnavailable

if TYPE_CHECKING:
    from google.cloud.firestore import Client, Transaction

log = logging.getLogger("firestore")
T = TypeVar("T")

DEFAULT_PROJECT = "netra-local"
TTL_FIELD = "expires_at"

_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")
_lock = threading.Lock()
_client: Client | None = None


class FirestoreSetupError(NetraError, ValueError):
    """Bad configuration or argument; ``code`` is stable, the message names the variable or value."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _project() -> str:
    project = os.environ.get("GOOGLE_CLOUD_PROJECT", "").strip() or DEFAULT_PROJECT
    if any(ch.isspace() or ch == "/" for ch in project):
        raise FirestoreSetupError("invalid_project", f"GOOGLE_CLOUD_PROJECT must be a project id, got {project!r}")
    return project


def _check_emulator_host() -> None:
    host = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if host is None:
        return
    match = _HOST_PORT.match(host.strip())
    if not match or not 0 < int(match.group(2)) <= 65535:
        raise FirestoreSetupError(
            "invalid_emulator_host", f"FIRESTORE_EMULATOR_HOST must be host:port (e.g. 127.0.0.1:8080), got {host!r}"
        )


def get_client() -> Client:
    """The process-wide Firestore client, created on first use."""
    client = _client
    if client is not None:
        return client
    return _create_client()


def _create_client() -> Client:
    global _client
    with _lock:
        if _client is None:
            project = _project()
            _check_emulator_host()
            from google.cloud import firestore

            # With FIRESTORE_EMULATOR_HOST set the library itself uses anonymous credentials and an
            # insecure channel; without it, Application Default Credentials (the service account in the cloud).
            _client = firestore.Client(project=project)
        return _client


def field_filter(field: str, op: str, value: Any) -> Any:
    """A query filter (google.cloud.firestore's FieldFilter), built after ``get_client()`` imported the library."""
    get_client()  # see _imported_names
    from google.cloud.firestore_v1.base_query import FieldFilter

    return FieldFilter(field, op, value)


def increment(amount: int) -> Any:
    """A server-side increment (google.cloud.firestore's Increment), built after ``get_client()``."""
    get_client()  # see _imported_names
    from google.cloud.firestore import Increment

    return Increment(amount)


# _imported_names: google.cloud.firestore is imported once, by get_client() under _lock, and names are taken
# from it only afterwards. Its modules import each other (base_query <-> collection), and a first import of
# firestore_v1.base_query in one thread while another thread imports google.cloud.firestore makes Python hand
# one of them the half-initialized module: "cannot import name 'BaseCollectionGroup' from partially initialized
# module". Seen on the bridge: a resume arrived while the event log warmed up, and both failed
# (tests/ws_bridge/test_replay_first_import.py).


def reset_client() -> None:
    """Forget the shared client (tests switch emulators or projects); the next get_client() makes a new one."""
    global _client
    with _lock:
        client, _client = _client, None
    if client is not None:
        # The client keeps its gRPC channel in a private attribute once used; close it if it exists.
        api = getattr(client, "_firestore_api_internal", None)
        if api is not None:
            api.transport.close()


def ttl_expiry(seconds: float) -> datetime:
    """The ``expires_at`` value (timezone-aware UTC) for a document that should live ``seconds`` from now."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds <= 0:
        raise FirestoreSetupError("invalid_ttl", f"TTL must be a positive number of seconds, got {seconds!r}")
    return datetime.now(UTC) + timedelta(seconds=seconds)


def collection_name(name: str) -> str:
    """``name`` with ``FIRESTORE_COLLECTION_PREFIX`` prepended."""
    if not isinstance(name, str) or not name or "/" in name or (name.startswith("__") and name.endswith("__")):
        raise FirestoreSetupError(
            "invalid_collection_name", f"collection name must be non-empty, without '/', not __reserved__; got {name!r}"
        )
    prefix = os.environ.get("FIRESTORE_COLLECTION_PREFIX", "")
    if "/" in prefix:
        raise FirestoreSetupError(
            "invalid_collection_prefix", f"FIRESTORE_COLLECTION_PREFIX must not contain '/', got {prefix!r}"
        )
    return f"{prefix}{name}"


def bounded(timeout_s: float) -> dict[str, Any]:
    """Keyword arguments that end one Firestore call within ``timeout_s`` in all, retries included.

    The library's default retry does not take ``timeout`` as an overall bound: against a Firestore that is down
    it keeps retrying UNAVAILABLE for its own deadline (over a minute, measured against a closed port), holding
    the request that long instead of answering 503 (shared.errors.transient_dependency_error)."""
    from google.api_core.retry import Retry, if_transient_error

    return {
        "timeout": timeout_s,
        "retry": Retry(predicate=if_transient_error, initial=0.1, maximum=1.0, multiplier=2.0, timeout=timeout_s),
    }


# -- transactions ------------------------------------------------------------------------------------------
TRANSACTION_BUDGET_S = 10.0  # all attempts of one transaction, backoff included
TRANSACTION_RPC_TIMEOUT_S = 5.0  # one begin, read or commit call
BACKOFF_FIRST_S = 0.05  # the first retry waits 0 to this (full jitter); the window doubles with each retry
BACKOFF_MAX_S = 1.0


class TransactionContention(ServiceUnavailable):
    """A transaction still lost to concurrent ones when its time budget ran out: nothing was applied."""

    def __init__(self, what: str, attempts: int) -> None:
        super().__init__(
            f"too many concurrent changes to the same {what}; nothing was changed, retry after the delay",
            retry_after=1,
            code="transaction_contention",
        )
        self.attempts = attempts


@functools.cache
def _bounded_transaction_class() -> type[Transaction]:
    """A Transaction whose begin, commit and rollback calls end within its ``timeout_s`` (the library gives them
    no deadline: against an unreachable Firestore each retried for about a minute). Built on first use so that
    importing this module imports no Google library."""
    from google.cloud.firestore import Transaction

    class BoundedTransaction(Transaction):
        # The same requests as the library's _begin/_commit/_rollback (google-cloud-firestore 2.x), with a
        # deadline. tests/shared/test_firestore_transactions.py fails if an upgrade changes what they rely on.
        timeout_s: float = TRANSACTION_RPC_TIMEOUT_S

        def _begin(self, retry_id: bytes | None = None) -> None:
            if self.in_progress:
                raise ValueError(f"transaction already begun: {self._id!r}")
            response = self._client._firestore_api.begin_transaction(
                request={"database": self._client._database_string, "options": self._options_protobuf(retry_id)},
                metadata=self._client._rpc_metadata,
                **bounded(self.timeout_s),
            )
            self._id = response.transaction

        def _commit(self) -> list[Any]:
            if not self.in_progress:
                raise ValueError("transaction not begun")
            response = self._client._firestore_api.commit(
                request={
                    "database": self._client._database_string,
                    "writes": self._write_pbs,
                    "transaction": self._id,
                },
                metadata=self._client._rpc_metadata,
                **bounded(self.timeout_s),
            )
            self._clean_up()
            self.write_results = list(response.write_results)
            self.commit_time = response.commit_time
            return self.write_results

        def _rollback(self) -> None:
            try:
                self._client._firestore_api.rollback(
                    request={"database": self._client._database_string, "transaction": self._id},
                    metadata=self._client._rpc_metadata,
                    **bounded(min(self.timeout_s, 2.0)),
                )
            finally:
                self._clean_up()

    return BoundedTransaction


class _KeyLock:
    __slots__ = ("lock", "__weakref__")

    def __init__(self) -> None:
        self.lock = threading.Lock()


_key_locks: weakref.WeakValueDictionary[str, _KeyLock] = weakref.WeakValueDictionary()


def _key_lock(key: str) -> _KeyLock:
    with _lock:
        found = _key_locks.get(key)
        if found is None:
            found = _key_locks[key] = _KeyLock()
        return found


def run_transaction(
    body: Callable[[Transaction], T], what: str, budget_s: float = TRANSACTION_BUDGET_S, key: str | None = None
) -> T:
    """``body(transaction)`` committed in one Firestore transaction, retried while it loses to concurrent ones.

    Every transactional path of the platform goes through here. ``body`` does all its reads (with
    ``transaction=``) before its writes, and may run several times, so it must not act outside the transaction.
    A lost race (ABORTED, at a read or the commit) is retried after a random exponential backoff (tenacity's
    "full jitter": 0 to 50 ms, doubling, at most 1 s) while ``budget_s`` allows another attempt to start; then
    :class:`TransactionContention` (503 ``transaction_contention`` with Retry-After), the last attempt rolled
    back, nothing applied. In all it takes at most ``budget_s`` plus one attempt, whose begin, reads and commit
    each end within TRANSACTION_RPC_TIMEOUT_S (reads: pass ``**bounded(...)``). Other errors are not retried
    here (a failed commit may have been applied); the caller answers them 503 through
    shared.errors.transient_dependency_error.

    ``key`` (the path of the document the transaction is about) makes transactions with the same key in this
    process run one at a time: they could only lose to each other. Without it, Google's emulator, which waits
    for locks instead of wounding the younger transaction as Firestore does, livelocks 8 same-process contenders
    on one document (every commit waits out the 2 s lock timeout while another holds a read lock). Waiting for
    the key counts against ``budget_s``. Contention between instances is left to the retries.

    Why not ``@firestore.transactional``: it retries an aborted commit at once, with no backoff and no time
    bound, 5 times, then raises ValueError (a 500). Google's emulator aborts two transactions that read the same
    document and both write it only after a 2 s lock timeout, and aborts both, so immediate retries collide
    again; 2 of 4 threads incrementing one counter failed that way. Retries keep the first attempt's id
    (``retry_transaction``) as the library does, so Firestore keeps their place in line.
    """
    from google.api_core.exceptions import Aborted
    from tenacity import RetryError, Retrying, retry_if_exception_type, stop_before_delay, wait_random_exponential

    client = get_client()
    started = time.monotonic()
    state: dict[str, Any] = {"attempts": 0, "retry_id": None}
    held = _key_lock(key) if key is not None else None
    if held is not None and not held.lock.acquire(timeout=budget_s):
        log.warning("transaction gave up waiting for its key", extra={"what": what, "elapsed_s": budget_s})
        raise TransactionContention(what, 0)

    def attempt() -> T:
        state["attempts"] += 1
        # Not shortened as the budget runs out: a commit that waits for a lock must be able to wait for the
        # lock's own timeout (2 s in Google's emulator), or it ends in DEADLINE_EXCEEDED, whose outcome is unknown.
        transaction = _bounded_transaction_class()(client, max_attempts=1)
        transaction.timeout_s = TRANSACTION_RPC_TIMEOUT_S
        transaction._begin(retry_id=state["retry_id"])
        if state["retry_id"] is None:
            state["retry_id"] = transaction._id
        try:
            result = body(transaction)
            transaction._commit()
            return result
        except BaseException:
            if transaction.in_progress:
                with contextlib.suppress(Exception):  # the transaction may already be gone (aborted)
                    transaction._rollback()
            raise

    retrying = Retrying(
        retry=retry_if_exception_type(Aborted),
        wait=wait_random_exponential(multiplier=BACKOFF_FIRST_S, max=BACKOFF_MAX_S),
        stop=stop_before_delay(max(0.0, budget_s - (time.monotonic() - started))),
    )
    try:
        return retrying(attempt)
    except RetryError as exc:
        elapsed = time.monotonic() - started
        log.warning(
            "transaction gave up under contention",
            extra={"what": what, "attempts": state["attempts"], "elapsed_s": round(elapsed, 3)},
        )
        raise TransactionContention(what, state["attempts"]) from exc.last_attempt.exception()
    finally:
        if held is not None:
            held.lock.release()


NESTED_ARRAY_KEY = "_netra_array"


def encode_nested_arrays(value: Any, in_array: bool = False) -> Any:
    """``value`` with every array that sits directly in an array stored as ``{NESTED_ARRAY_KEY: [...]}``.

    Firestore refuses an array inside an array ("Cannot convert an array value in an array value", INVALID_ARGUMENT;
    Google's emulator too), and event data holds such values (a report table's rows). decode_nested_arrays
    undoes it; data without nested arrays is stored unchanged.
    """
    if isinstance(value, list):
        items = [encode_nested_arrays(item, True) for item in value]
        return {NESTED_ARRAY_KEY: items} if in_array else items
    if isinstance(value, dict):
        return {key: encode_nested_arrays(item) for key, item in value.items()}
    return value


def decode_nested_arrays(value: Any) -> Any:
    """The inverse of encode_nested_arrays."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get(NESTED_ARRAY_KEY), list):
            return [decode_nested_arrays(item) for item in value[NESTED_ARRAY_KEY]]
        return {key: decode_nested_arrays(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode_nested_arrays(item) for item in value]
    return value
