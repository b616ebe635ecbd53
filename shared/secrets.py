"""Secret values: from the environment (the platform injects Secret Manager versions there), or, for
values that rotate without a redeploy, read from Secret Manager's ``latest`` version with a TTL cache.

Secret values are wrapped in :class:`Secret` so that reprs, logs and error bodies only ever show a mask.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_random_exponential

from shared.errors import NetraError

log = logging.getLogger(__name__)


class Secret:
    """A string that refuses to show itself except through :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class SecretUnavailable(NetraError):
    """Secret Manager could not deliver a secret within the retry budget. Never holds the value."""


def env_secret(name: str, environ: dict[str, str] | None = None) -> Secret | None:
    value = (environ if environ is not None else os.environ).get(name)
    return Secret(value) if value else None


def _transient(exc: BaseException) -> bool:
    # Permission and not-found errors are final: retrying them only delays the clear error (scenario 7/26).
    from google.api_core import exceptions as gexc

    return isinstance(
        exc,
        gexc.ServiceUnavailable
        | gexc.DeadlineExceeded
        | gexc.InternalServerError
        | gexc.TooManyRequests
        | ConnectionError
        | TimeoutError,
    )


def _make_client() -> Any:
    from google.cloud import secretmanager

    emulator = os.environ.get("SECRET_MANAGER_EMULATOR_HOST")
    if not emulator:
        return secretmanager.SecretManagerServiceClient()
    # Local and test runs only: plain gRPC to the emulator, no credentials.
    import grpc
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
        SecretManagerServiceGrpcTransport,
    )

    return secretmanager.SecretManagerServiceClient(
        transport=SecretManagerServiceGrpcTransport(channel=grpc.insecure_channel(emulator))
    )


class RotatingSecretReader:
    """Reads ``projects/P/secrets/NAME/versions/latest`` and caches it for ``ttl_s`` seconds.

    The Secret Manager client is created on first use (cold-start rule), with bounded retries; on a
    failed refresh after a successful read, the last good value is served (stale beats down).
    """

    def __init__(
        self,
        resource: str,
        ttl_s: float = 300.0,
        attempts: int = 4,
        max_total_s: float = 20.0,
        fetch: Callable[[str], str] | None = None,
    ) -> None:
        self.resource = resource if "/versions/" in resource else f"{resource}/versions/latest"
        self.ttl_s = ttl_s
        self.attempts = attempts
        self.max_total_s = max_total_s
        self._fetch_override = fetch
        self._client: Any = None
        self._lock = threading.Lock()
        self._value: Secret | None = None
        self._fetched_at = 0.0

    def _fetch(self) -> str:
        if self._fetch_override is not None:
            return self._fetch_override(self.resource)
        if self._client is None:
            self._client = _make_client()
        # retry=None: the client's own retry would stack on ours and blow the start-up bound.
        response = self._client.access_secret_version(name=self.resource, timeout=5.0, retry=None)
        return response.payload.data.decode("utf-8")

    def get(self, force: bool = False) -> Secret:
        with self._lock:
            fresh = self._value is not None and time.monotonic() - self._fetched_at < self.ttl_s
            if fresh and not force:
                assert self._value is not None
                return self._value
            try:
                for attempt in Retrying(
                    stop=stop_after_attempt(self.attempts) | stop_after_delay(self.max_total_s),
                    wait=wait_random_exponential(multiplier=0.5, max=5),
                    retry=retry_if_exception(_transient),
                    reraise=True,
                ):
                    with attempt:
                        value = self._fetch()
            except Exception as exc:
                reason = type(exc).__name__
                if self._value is not None:
                    log.warning(
                        "secret refresh failed, serving cached value", extra={"secret": self.resource, "reason": reason}
                    )
                    return self._value
                raise SecretUnavailable(f"could not read secret {self.resource}: {reason}") from None
            self._value = Secret(value)
            self._fetched_at = time.monotonic()
            return self._value
