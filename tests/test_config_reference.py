"""docs/CONFIGURATION.md lists every variable each service reads, as the settings classes define them."""

from __future__ import annotations

from shared.config import REPO_ROOT
from tests.config_reference import SERVICES, load, render


def test_configuration_page_matches_the_settings_classes() -> None:
    page = (REPO_ROOT / "docs" / "CONFIGURATION.md").read_text()
    stale = "docs/CONFIGURATION.md is stale: run python -m tests.config_reference > docs/CONFIGURATION.md"
    assert page == render(), stale


def test_every_field_has_a_description_saying_what_it_holds() -> None:
    missing = [
        f"{spec}.{name}"
        for _, spec in SERVICES
        for name, field in load(spec).model_fields.items()
        if not (field.description or "").strip()
    ]
    assert not missing, f"settings without a description (the start-up error and the docs need one): {missing}"
