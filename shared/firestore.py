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

import math
import os
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.cloud.firestore import Client

DEFAULT_PROJECT = "netra-local"
TTL_FIELD = "expires_at"

_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")
_lock = threading.Lock()
_client: Client | None = None


class FirestoreSetupError(ValueError):
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
