"""NETRA_EMULATORS and the automatic choice between Google's emulators and the project's own."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from emulators.implementation import ENV, OFFICIAL, OWN, ImplementationError, choose, official_parts, resolve


def path_with(tmp_path: Path, *tools: str) -> str:
    """A PATH holding only links to the given tools (e.g. gcloud without java)."""
    shim = tmp_path / "bin"
    shim.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        assert found, f"{tool} must be installed for this test"
        (shim / tool).symlink_to(found)
    return str(shim)


def test_auto_picks_google_s_emulators_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    if official_parts()[0] is None:
        # Only on the newer image without gcloud, where there is nothing to pick; the fallback choice is
        # asserted there by test_without_gcloud_the_fallback_is_the_own_emulators. Never skipped where gcloud is.
        pytest.skip(f"Google's emulators cannot run here: {official_parts()[1]}")
    monkeypatch.delenv(ENV, raising=False)
    assert choose().kind == OFFICIAL
    monkeypatch.setenv(ENV, "auto")
    assert choose().kind == OFFICIAL
    assert "Pub/Sub emulator 0." in choose().describe()


def test_without_gcloud_the_fallback_is_the_own_emulators(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", path_with(tmp_path, "java"))
    monkeypatch.delenv(ENV, raising=False)
    choice = choose()
    assert choice.kind == OWN and "gcloud is not on PATH" in choice.why
    monkeypatch.setenv(ENV, OFFICIAL)  # forcing Google's where they cannot run is an error, not a fallback
    with pytest.raises(ImplementationError) as info:
        choose()
    assert info.value.code == "official_unavailable" and "gcloud is not on PATH" in info.value.message


def test_without_java_the_fallback_is_the_own_emulators(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("gcloud") is None:
        # The missing-java case needs a real gcloud to hide java from; without gcloud the gcloud case covers it.
        pytest.skip("gcloud is not installed here")
    monkeypatch.setenv("PATH", path_with(tmp_path, "gcloud"))
    monkeypatch.delenv(ENV, raising=False)
    choice = choose()
    assert choice.kind == OWN and "java is not on PATH" in choice.why


def test_own_is_forced_even_where_google_s_are_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "own")
    assert choose().kind == OWN
    assert resolve(None) == OWN
    assert resolve(OFFICIAL) == OFFICIAL  # a caller that names one gets it, whatever the switch says


@pytest.mark.parametrize("bad", ["1", "gcloud", "embedded"])
def test_a_bad_setting_is_a_clear_error(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, bad)
    with pytest.raises(ImplementationError) as info:
        choose()
    assert info.value.code == "bad_setting" and "official, own or auto" in info.value.message
