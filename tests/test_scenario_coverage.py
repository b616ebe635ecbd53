"""Every cold-start scenario has at least one test named after it, and docs/COLD_START.md says which."""

from __future__ import annotations

from tests.scenario_map import REPO, SCENARIO_COUNT, render, scenario_tests, scenario_titles


def test_every_scenario_has_a_test_named_after_it() -> None:
    titles = scenario_titles()
    assert sorted(titles) == list(range(1, SCENARIO_COUNT + 1)), "the shared list no longer has 30 scenarios"
    tests = scenario_tests()
    missing = [n for n in titles if not tests.get(n)]
    assert not missing, f"scenarios without a test named test_scenario_<n>_...: {missing}"
    unknown = sorted(set(tests) - set(titles))
    assert not unknown, f"tests name scenarios that do not exist: {unknown}"


def _test_cells(page: str) -> dict[str, str]:
    """Scenario number -> its tests cell (the titles come from the shared list, which may not be beside us)."""
    rows = [line.split(" | ") for line in page.splitlines() if line.startswith("| ") and line[2].isdigit()]
    return {row[0].strip("| "): row[-1].strip(" |") for row in rows}


def test_cold_start_page_matches_the_tests() -> None:
    page = (REPO / "docs" / "COLD_START.md").read_text()
    assert _test_cells(page) == _test_cells(render()), (
        "docs/COLD_START.md is stale: run python -m tests.scenario_map > docs/COLD_START.md"
    )
