"""Secrets: masked everywhere, rotating values read from Secret Manager with a TTL and bounded retries.

The real google-cloud-secret-manager client talks gRPC to a local emulator (emulators/secretmanager.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from emulators.secretmanager import SecretManagerEmulator, start_secret_manager
from shared.logging import JsonFormatter
from shared.secrets import RotatingSecretReader, Secret, SecretUnavailable

RESOURCE = "projects/p1/secrets/token-keyset"


@pytest.fixture
def secret_manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretManagerEmulator]:
    emu = start_secret_manager()
    monkeypatch.setenv("SECRET_MANAGER_EMULATOR_HOST", f"127.0.0.1:{emu.port}")
    yield emu
    emu.stop()


def test_secret_never_shows_itself() -> None:
    secret = Secret("s3cr3t-value")
    assert "s3cr3t-value" not in repr(secret)
    assert "s3cr3t-value" not in str(secret)
    assert "s3cr3t-value" not in f"{secret} {secret!r}"
    assert secret.reveal() == "s3cr3t-value"


def test_reads_latest_and_caches_for_ttl(secret_manager: SecretManagerEmulator) -> None:
    secret_manager.add_version("p1", "token-keyset", "v1")
    reader = RotatingSecretReader(RESOURCE, ttl_s=0.5)
    assert reader.get().reveal() == "v1"
    secret_manager.add_version("p1", "token-keyset", "v2")
    assert reader.get().reveal() == "v1", "within the TTL the cached value is served"
    assert secret_manager.behaviour.calls == 1
    time.sleep(0.6)
    assert reader.get().reveal() == "v2", "after the TTL the new latest version is read without a redeploy"
    assert secret_manager.behaviour.calls == 2


def test_scenario_26_slow_then_available_is_retried(secret_manager: SecretManagerEmulator) -> None:
    """Scenario 26: Secret Manager unavailable at start -> bounded retries, then the value."""
    secret_manager.add_version("p1", "token-keyset", "value-after-retries")
    secret_manager.behaviour.fail_next = 2
    reader = RotatingSecretReader(RESOURCE, attempts=4, max_total_s=20)
    assert reader.get().reveal() == "value-after-retries"
    assert secret_manager.behaviour.calls == 3


def test_scenario_26_unavailable_gives_clear_bounded_error_without_secret_in_logs(
    secret_manager: SecretManagerEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Scenario 26: bounded retries, then a clear error; secrets never appear in logs."""
    secret_manager.add_version("p1", "token-keyset", "TOP-SECRET-KEYSET")
    reader = RotatingSecretReader(RESOURCE, ttl_s=0.0, attempts=3, max_total_s=10)
    caplog.set_level(logging.DEBUG)
    assert reader.get().reveal() == "TOP-SECRET-KEYSET"
    secret_manager.behaviour.fail_next = 100
    calls_before = secret_manager.behaviour.calls
    # Refresh fails: the last good value is served (stale beats down) and a warning is logged.
    assert reader.get(force=True).reveal() == "TOP-SECRET-KEYSET"
    assert secret_manager.behaviour.calls - calls_before == 3, "retries are bounded"

    cold = RotatingSecretReader(RESOURCE, attempts=3, max_total_s=10)
    with pytest.raises(SecretUnavailable) as info:
        cold.get()
    assert "token-keyset" in str(info.value) and "ServiceUnavailable" in str(info.value)
    formatter = JsonFormatter("test", "p1")
    rendered = "\n".join(formatter.format(r) for r in caplog.records)
    assert "TOP-SECRET-KEYSET" not in rendered
    assert "TOP-SECRET-KEYSET" not in str(info.value)


def test_permission_denied_is_not_retried(secret_manager: SecretManagerEmulator) -> None:
    secret_manager.add_version("p1", "token-keyset", "x")
    secret_manager.behaviour.deny = True
    reader = RotatingSecretReader(RESOURCE, attempts=5)
    with pytest.raises(SecretUnavailable, match="PermissionDenied"):
        reader.get()
    assert secret_manager.behaviour.calls == 1, "a final error must not be retried"
