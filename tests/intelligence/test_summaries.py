"""The usage summaries (shared/db/migrations/0007_usage_summary.sql, kept by triggers in the transaction that
writes the records) give every analysis tool the figures it computes from the records themselves: across
several uploads, a re-sent upload (duplicates skipped), records without latency, long-context prompts, an
unpriced model, and after deleting one upload."""

from __future__ import annotations

from typing import Any

import pytest

from functions.agent.intelligence.facts import Facts
from functions.agent.intelligence.toolbox import FULL_ANALYSIS, Toolbox
from functions.agent.usage import store
from tests.intelligence import datasets
from tests.intelligence.conftest import make_user


def _both(db: Any, user: str) -> tuple[dict[str, Any], dict[str, Any]]:
    summarised = Toolbox(db, user, use_rollups=False)
    records = Toolbox(db, user, use_rollups=False)
    records.facts = Facts(db, user, use_summaries=False)
    assert summarised.facts.summaries_exact()
    return (
        {f"{n}:{sorted(a.items())}": summarised.call(n, a) for n, a in FULL_ANALYSIS},
        {f"{n}:{sorted(a.items())}": records.call(n, a) for n, a in FULL_ANALYSIS},
    )


def test_summaries_give_the_records_figures_through_uploads_and_deletes(intel_db: Any) -> None:
    user = make_user(intel_db)
    rows = datasets.dataset_a()
    first = datasets.load(intel_db, user, rows[:20])
    datasets.load(intel_db, user, rows[15:])  # rows 15-19 again: skipped, counted once
    datasets.load(intel_db, user, datasets.dataset_b())
    datasets.load(
        intel_db,
        user,
        [datasets.row("lc-extra", "2025-03-02T15:30:00Z", "gemini-2.5-pro", 180_000, 10, feature="rag")],
    )
    summarised, records = _both(intel_db, user)
    assert summarised["usage_overview:[]"]["records"] == len(rows) + 5 + 1
    assert summarised["long_context:[]"]["long_context_requests"] == 2
    assert summarised == records

    # Deleting an upload re-sums the days it touched (a maximum or a first call cannot be subtracted).
    store.delete(intel_db, user, first["upload_id"])
    summarised, records = _both(intel_db, user)
    assert summarised["usage_overview:[]"]["records"] == len(rows) - 20 + 5 + 1
    assert summarised == records

    store.delete(intel_db, user)
    assert intel_db.scalar("SELECT count(*) FROM usage_day_segments WHERE user_id = %s", [user]) == 0
    assert intel_db.scalar("SELECT count(*) FROM usage_latency_counts WHERE user_id = %s", [user]) == 0


def test_records_are_not_updated_in_place(intel_db: Any) -> None:
    user = make_user(intel_db)
    datasets.load(intel_db, user, datasets.dataset_b())
    with pytest.raises(Exception, match="not updated in place"):
        intel_db.execute("UPDATE usage_records SET output_tokens = 0 WHERE user_id = %s", [user])
