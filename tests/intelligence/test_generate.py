"""The synthetic workload generator: deterministic, valid in our schema, and carrying the patterns each
profile is meant to show; the CLI and the chat command."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import date
from typing import Any

import pytest

from functions.agent.intelligence.pipeline import run
from functions.agent.intelligence.toolbox import Toolbox
from functions.agent.usage.generate import PROFILES, generate
from functions.agent.usage.schema import build_row
from shared.config import REPO_ROOT
from tests.intelligence import datasets
from tests.intelligence.conftest import make_user
from tests.intelligence.harness import TestRunContext

START = date(2025, 9, 1)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "functions.agent.usage.generate", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_is_deterministic_with_a_seed() -> None:
    args = ("--profile", "rag_search", "--days", "2", "--requests-per-day", "50", "--start", "2025-09-01")
    first, second = cli(*args, "--seed", "5"), cli(*args, "--seed", "5")
    other = cli(*args, "--seed", "6")
    assert first.returncode == 0 and first.stderr.strip() == "wrote 100 rows"
    assert hashlib.sha256(first.stdout.encode()).digest() == hashlib.sha256(second.stdout.encode()).digest()
    assert first.stdout != other.stdout
    csv_out = cli(*args, "--seed", "5", "--format", "csv")
    assert csv_out.stdout.splitlines()[0].startswith("request_id,timestamp,provider,model")
    assert len(csv_out.stdout.splitlines()) == 101
    bad = cli("--profile", "nope")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    assert all(name in cli("--list").stdout for name in PROFILES)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_rows_are_valid(profile: str) -> None:
    rows = list(generate(profile, days=2, requests_per_day=100, seed=1, start=START))
    assert len(rows) == 200 and len({r["request_id"] for r in rows}) == 200
    assert [r["timestamp"] for r in rows] == sorted(r["timestamp"] for r in rows)
    for row in rows:
        build_row(row)


EXPECTED = {
    # profile: (tool, what must be found there)
    "support_chatbot": [
        ("model_rightsizing", "gpt-4o", "intent_classifier"),
        ("caching_opportunity", "gpt-4o", None),
        ("duplicate_requests", "gpt-4o", None),
        ("batch_opportunity", "gpt-4o-mini", None),
    ],
    "rag_search": [("long_context", "gemini-2.5-pro", None), ("model_rightsizing", "gemini-2.5-pro", "query_rewrite")],
    "batch_document_processing": [
        ("batch_opportunity", "claude-sonnet-4-5", None),
        ("caching_opportunity", "claude-sonnet-4-5", None),
        ("output_trimming", "claude-sonnet-4-5", "summarize"),
    ],
    "coding_assistant": [
        ("caching_opportunity", "gpt-5", None),
        ("model_rightsizing", "gpt-5", "inline_complete"),
        ("batch_opportunity", "claude-opus-4-5", None),
    ],
}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_each_profile_shows_its_patterns(intel_db: Any, profile: str) -> None:
    user = make_user(intel_db)
    datasets.load(intel_db, user, list(generate(profile, days=2, requests_per_day=300, seed=2, start=START)))
    toolbox = Toolbox(intel_db, user, use_rollups=False)
    for tool, model, feature in EXPECTED[profile]:
        result = toolbox.call(tool)
        entries = result.get("models") or result.get("candidates") or []
        found = [e for e in entries if e["model"] == model and (feature is None or e.get("feature") == feature)]
        assert found and found[0]["monthly_savings_usd"] > 0, (tool, model, feature, result)
    if profile == "rag_search":
        below = toolbox.call("caching_opportunity")["below_minimum"]
        assert below and below[0]["model"] == "gemini-2.5-pro" and below[0]["min_cacheable_tokens"] == 4096


def test_chat_command_loads_sample_data_and_reports(intel_db: Any, user_id: str) -> None:
    ctx = TestRunContext(intel_db, user_id, "/generate batch_document_processing days=2 seed=9")
    answer = run(ctx)
    generated = ctx.results("generate_sample_data")[0]
    assert generated == {
        "profile": "batch_document_processing",
        "days": 2,
        "seed": 9,
        "requests_per_day": 800,
        "rows_inserted": 1600,
        "rows_duplicate": 0,
    }
    assert answer.metadata["route"] == "report" and answer.metadata["generated"]["rows_inserted"] == 1600
    assert "Move background traffic on claude-sonnet-4-5 to the batch API" in answer.content
    again = run(TestRunContext(intel_db, user_id, "/generate batch_document_processing days=2 seed=9"))
    assert again.metadata["generated"]["rows_duplicate"] == 1600  # same seed, same request ids: nothing added
