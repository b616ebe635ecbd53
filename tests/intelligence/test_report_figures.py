"""Every number in a final report is found in the tool results of the same run.

The parser here is written independently of functions/agent/intelligence/figures.py: it takes every run of
digits in the report that is not part of an identifier (gpt-4o, claude-sonnet-4-5, p95, hex hashes), and
looks it up among the numbers of the run's tool results (numeric values, and numbers written inside strings
such as the action plans' snippets). Money is compared after rounding to the cent as displayed.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from functions.agent.intelligence.pipeline import run
from functions.agent.usage.generate import PROFILES, generate
from tests.intelligence import datasets
from tests.intelligence.conftest import make_user
from tests.intelligence.harness import TestRunContext

TOKEN = re.compile(r"\d{4}-\d{2}-\d{2}|\$?\d[\d,]*(?:\.\d+)?")


def report_numbers(text: str) -> list[str]:
    found = []
    for match in TOKEN.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        after = text[match.end()] if match.end() < len(text) else " "
        if before.isalnum() or before in "-_./:@" or after.isalnum() or after in "-_/@":
            continue  # inside an identifier, a path, a hash or a version
        found.append(match.group(0).lstrip("$").replace(",", ""))
    return found


def leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in leaves(v)]
    return [value]


def result_numbers(ctx: TestRunContext) -> set[str]:
    numbers: set[str] = set()
    for value in leaves([r["result"] for r in ctx.tool_results]):
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float):
            numbers.add(str(Decimal(str(value)).normalize()))
        elif isinstance(value, str):
            numbers.update(
                str(Decimal(n).normalize()) if "-" not in n else n
                for n in (m.replace(",", "") for m in TOKEN.findall(value.replace("$", "")))
            )
    return numbers


def assert_traceable(ctx: TestRunContext, content: str) -> int:
    known = result_numbers(ctx)
    figures = report_numbers(content)
    missing = [
        f
        for f in figures
        if ("-" in f and f not in known) or ("-" not in f and str(Decimal(f).normalize()) not in known)
    ]
    assert not missing, f"figures in the report that no tool produced: {missing}"
    return len(figures)


def test_reference_report_is_fully_traceable(intel_db: Any) -> None:
    user = make_user(intel_db)
    datasets.load(intel_db, user, datasets.dataset_a())
    ctx = TestRunContext(intel_db, user, "How can we cut our LLM costs? We spend about 9999 dollars.")
    answer = run(ctx)
    assert answer.metadata["route"] == "report"
    assert assert_traceable(ctx, answer.content) > 100
    assert "9999" not in answer.content  # the user's own figure came back only through the model: dropped


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_generated_workload_reports_are_traceable(intel_db: Any, profile: str) -> None:
    user = make_user(intel_db)
    datasets.load(
        intel_db, user, list(generate(profile, days=3, requests_per_day=150, seed=11, start=date(2025, 9, 1)))
    )
    ctx = TestRunContext(intel_db, user, "Where can we cut our LLM spend?")
    answer = run(ctx)
    assert answer.metadata["route"] == "report" and answer.metadata["report"]["recommendations"]
    assert assert_traceable(ctx, answer.content) > 50


def test_the_parser_skips_identifiers() -> None:
    text = "Move `gpt-4o` / classify to gpt-5-nano or claude-sonnet-4-5 (p95 1,234.5 ms) for $36.78 on 2025-03-01."
    assert report_numbers(text) == ["1234.5", "36.78", "2025-03-01"]
