"""Reference datasets small enough to price by hand (the arithmetic is in test_reference.py next to the
expected figures). All list prices per million tokens, from genai-prices 0.2.3 (shared/pricing):

    gpt-4o             input 2.50  cached 1.25  output 10.00            (OpenAI: cache writes at input price)
    gpt-5-nano         input 0.05  cached 0.005 output 0.40
    gpt-4o-mini        input 0.15  cached 0.075 output 0.60  batch 50 %
    gpt-4.1            input 2.00  cached 0.50  output 8.00  batch 50 %, batch does not stack with caching
    claude-sonnet-4-5  input 3.00  cached 0.30  write(5m) 3.75 output 15.00, batch 50 % and stacks
    gemini-2.5-pro     input 1.25  output 10.00; above 200,000 prompt tokens input 2.50, output 15.00
"""

from __future__ import annotations

from typing import Any

from functions.agent.usage import store
from functions.agent.usage.schema import build_row


def row(request_id: str, ts: str, model: str, input_tokens: int, output_tokens: int, **extra: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "timestamp": ts,
        "model": model,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        **extra,
    }


def dataset_a() -> list[dict[str, Any]]:
    """Two days (2025-03-01 and 2025-03-02): monthly = period x 15."""
    rows = []
    for day in (1, 2):
        for k in range(5):
            # gpt-4o chat: one 5-minute cache window per day holds all five; 80,000-token shared prefix.
            rows.append(
                row(
                    f"chat-{day}-{k}",
                    f"2025-03-0{day}T10:0{k}:00Z",
                    "gpt-4o",
                    100_000,
                    2_000,
                    provider="openai",
                    feature="chat",
                    interactive=True,
                    prefix_hash="sys-chat",
                    prefix_tokens=80_000,
                    latency_ms=100 * (5 * (day - 1) + k + 1),
                    end_user="alice" if day == 1 else "bob",
                    request_hash=f"chat-{day}-{k}",
                )
            )
        for k in range(10):
            # gpt-4o classify: 10-token answers; the first two of each day are the same request (4 in all).
            rows.append(
                row(
                    f"cls-{day}-{k}",
                    f"2025-03-0{day}T12:{k:02d}:30Z",
                    "gpt-4o",
                    50_000,
                    10,
                    feature="classify",
                    interactive=True,
                    end_user="carol",
                    request_hash="dupA" if k < 2 else f"cls-{day}-{k}",
                )
            )
        for k in range(3):
            # claude-sonnet-4-5 summaries at night, background, 3 per 5-minute window per day.
            rows.append(
                row(
                    f"sum-{day}-{k}",
                    f"2025-03-0{day}T02:0{k}:00Z",
                    "claude-sonnet-4-5-20250929",
                    100_000,
                    4_000,
                    feature="summarize",
                    interactive=False,
                    prefix_hash="sys-sum",
                    prefix_tokens=50_000,
                )
            )
        # gemini-2.5-pro: one long-context request per day.
        rows.append(
            row(
                f"rag-{day}",
                f"2025-03-0{day}T15:00:00Z",
                "gemini-2.5-pro",
                250_000,
                1_000,
                feature="rag",
                interactive=True,
            )
        )
        # gpt-4o-mini background extraction; the second one failed.
        rows.append(
            row(
                f"ext-{day}",
                f"2025-03-0{day}T03:00:00Z",
                "openai/gpt-4o-mini-2024-07-18",
                10_000,
                100,
                feature="extract",
                interactive=False,
                status="ok" if day == 1 else "error",
            )
        )
    # A model the catalog does not know: counted, not priced.
    rows.append(row("acme-1", "2025-03-02T16:00:00Z", "acme-llm-1", 1_000, 100, provider="acme", feature="misc"))
    return rows


def dataset_b() -> list[dict[str, Any]]:
    """One day (2025-04-01): monthly = period x 30. Background gpt-4.1 where batch and caching compete."""
    rows = [
        row(
            f"night-{k}",
            f"2025-04-01T01:0{k}:00Z",
            "gpt-4.1",
            50_000,
            1_000,
            feature="nightly",
            interactive=False,
            prefix_hash="sys-night",
            prefix_tokens=40_000,
        )
        for k in range(4)
    ]
    # Already 90 % cached: batch would bill the cached tokens at the batch input rate, which costs more.
    rows.append(
        row(
            "cached-1",
            "2025-04-01T05:00:00Z",
            "gpt-4.1",
            10_000,
            0,
            cached_input_tokens=90_000,
            feature="cached_job",
            interactive=False,
        )
    )
    return rows


def load(db: Any, user_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return store.insert_rows(db, user_id, [build_row(r) for r in rows], "netra")
