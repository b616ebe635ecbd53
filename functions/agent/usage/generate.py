"""Synthetic LLM usage for a few named workload profiles, so a new user can try the product without data.

    python -m functions.agent.usage.generate --profile support_chatbot --days 7 --seed 42 > usage.jsonl
    python -m functions.agent.usage.generate --profile rag_search --format csv --start 2025-11-01 -o rag.csv
    python -m functions.agent.usage.generate --list

In a chat, the command ``/generate support_chatbot days=7 seed=42`` stores the same rows for the user.
The output depends only on the arguments (profile, days, requests per day, seed, start): same arguments,
same rows. Each profile carries the patterns the analyses look for (repeated prefixes, classification-like
calls on premium models, background work, long answers, long contexts, exact repeats).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TextIO

from functions.agent.usage.schema import short_hash


@dataclass(frozen=True)
class Workload:
    feature: str
    provider: str
    model: str
    share: float  # of the profile's requests
    prompt: tuple[int, int]  # variable prompt tokens: mean, spread (lognormal-ish, never below 1)
    output: tuple[int, int]
    prefix: str | None = None  # shared prefix name (per end user when it ends with ":user")
    prefix_tokens: int = 0
    reasoning: tuple[int, int] = (0, 0)
    interactive: bool = True
    max_tokens: int | None = None
    duplicate_rate: float = 0.0  # share of requests that repeat one of a small pool of identical requests
    error_rate: float = 0.01
    long_context_rate: float = 0.0  # share of requests with a prompt above 200k tokens
    ms_per_output_token: float = 12.0
    base_latency_ms: int = 400


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    requests_per_day: int
    end_users: int
    workloads: tuple[Workload, ...]


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "support_chatbot",
            "customer support assistant: chat answers with a long system prompt, an intent "
            "classifier on the same premium model, nightly ticket summaries",
            2000,
            3000,
            (
                Workload(
                    "chat_answer",
                    "openai",
                    "gpt-4o",
                    0.70,
                    (300, 200),
                    (180, 120),
                    "support-system-v3",
                    2400,
                    max_tokens=800,
                    duplicate_rate=0.04,
                ),
                Workload(
                    "intent_classifier",
                    "openai",
                    "gpt-4o",
                    0.20,
                    (60, 30),
                    (4, 2),
                    "intent-classifier-v2",
                    1200,
                    max_tokens=10,
                    duplicate_rate=0.10,
                    base_latency_ms=250,
                ),
                Workload(
                    "ticket_summary",
                    "openai",
                    "gpt-4o-mini",
                    0.10,
                    (1500, 600),
                    (250, 100),
                    None,
                    0,
                    interactive=False,
                    max_tokens=400,
                ),
            ),
        ),
        Profile(
            "rag_search",
            "retrieval-augmented search: long retrieved contexts on a premium model, some above "
            "the long-context threshold, plus a query rewriter with short answers",
            1500,
            2000,
            (
                Workload(
                    "answer",
                    "google",
                    "gemini-2.5-pro",
                    0.75,
                    (12000, 6000),
                    (400, 200),
                    "rag-instructions-v1",
                    900,
                    reasoning=(300, 150),
                    max_tokens=2048,
                    long_context_rate=0.02,
                    ms_per_output_token=8.0,
                    base_latency_ms=900,
                ),
                Workload(
                    "query_rewrite",
                    "google",
                    "gemini-2.5-pro",
                    0.25,
                    (80, 40),
                    (25, 10),
                    "rewrite-v2",
                    4200,
                    reasoning=(60, 30),
                    max_tokens=64,
                    duplicate_rate=0.08,
                    base_latency_ms=500,
                ),
            ),
        ),
        Profile(
            "batch_document_processing",
            "document pipeline: summaries and field extraction with a long "
            "instruction prefix, all of it background work",
            800,
            50,
            (
                Workload(
                    "summarize",
                    "anthropic",
                    "claude-sonnet-4-5",
                    0.60,
                    (8000, 4000),
                    (900, 300),
                    "summarize-system-v4",
                    3000,
                    interactive=False,
                    max_tokens=2000,
                    ms_per_output_token=15.0,
                    base_latency_ms=1500,
                ),
                Workload(
                    "extract_fields",
                    "anthropic",
                    "claude-sonnet-4-5",
                    0.40,
                    (5000, 2500),
                    (120, 50),
                    "extract-schema-v2",
                    1800,
                    interactive=False,
                    max_tokens=512,
                    duplicate_rate=0.03,
                ),
            ),
        ),
        Profile(
            "coding_assistant",
            "coding assistant: repository context per developer, inline completions on a "
            "reasoning model, test generation in CI",
            1200,
            40,
            (
                Workload(
                    "code_chat",
                    "openai",
                    "gpt-5",
                    0.50,
                    (1500, 800),
                    (600, 300),
                    "repo-context:user",
                    6000,
                    reasoning=(1500, 800),
                    max_tokens=8000,
                    ms_per_output_token=10.0,
                    base_latency_ms=1200,
                ),
                Workload(
                    "inline_complete",
                    "openai",
                    "gpt-5",
                    0.40,
                    (800, 300),
                    (40, 20),
                    "completion-system-v1",
                    1100,
                    reasoning=(100, 50),
                    max_tokens=256,
                    base_latency_ms=350,
                ),
                Workload(
                    "test_generation",
                    "anthropic",
                    "claude-opus-4-5",
                    0.10,
                    (4000, 1500),
                    (1500, 500),
                    "test-gen-v1",
                    2500,
                    interactive=False,
                    max_tokens=4000,
                    base_latency_ms=2000,
                ),
            ),
        ),
    )
}

FIELDS = (
    "request_id",
    "timestamp",
    "provider",
    "model",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "latency_ms",
    "status",
    "feature",
    "end_user",
    "prefix_hash",
    "prefix_tokens",
    "request_hash",
    "max_tokens",
    "interactive",
)


def _draw(rng: random.Random, mean: int, spread: int) -> int:
    if mean <= 0:
        return 0
    sigma = math.sqrt(math.log(1 + (spread / mean) ** 2)) if spread else 0.0
    return max(1, round(rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)))


def _second_of_day(rng: random.Random, interactive: bool) -> int:
    if not interactive:
        return rng.randrange(0, 6 * 3600)  # background jobs run at night
    # Office hours with a lunch dip: a mix of two normal bumps, clipped to the day.
    centre = 10.5 * 3600 if rng.random() < 0.55 else 15.5 * 3600
    return min(86_399, max(0, round(rng.gauss(centre, 1.6 * 3600))))


def generate(
    profile: str, days: int = 7, requests_per_day: int | None = None, seed: int = 42, start: date | None = None
) -> Iterator[dict[str, Any]]:
    """Rows in the project's schema, in time order."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if not 1 <= days <= 366:
        raise ValueError("days must be between 1 and 366")
    spec = PROFILES[profile]
    per_day = requests_per_day or spec.requests_per_day
    if per_day < 1:
        raise ValueError("requests per day must be at least 1")
    rng = random.Random(f"{profile}:{seed}")
    first = start or (datetime.now(UTC).date() - timedelta(days=days))
    shares = [w.share for w in spec.workloads]
    pools: dict[str, list[dict[str, Any]]] = {}
    rows = []
    for day in range(days):
        midnight = datetime.combine(first + timedelta(days=day), time.min, UTC)
        for _ in range(per_day):
            work = rng.choices(spec.workloads, weights=shares)[0]
            rows.append(_row(rng, spec, work, midnight, pools))
    rows.sort(key=lambda r: r["timestamp"])
    for index, row in enumerate(rows):
        row["request_id"] = f"{profile}-{seed}-{index:07d}"
        row["timestamp"] = row["timestamp"].isoformat().replace("+00:00", "Z")
        yield row


def _row(
    rng: random.Random, spec: Profile, work: Workload, midnight: datetime, pools: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    user = f"user-{rng.randrange(spec.end_users):05d}"
    repeat = work.duplicate_rate and rng.random() < work.duplicate_rate
    if repeat:
        # A small pool of identical requests (FAQ questions, the same document twice): same tokens, same hash.
        pool = pools.setdefault(work.feature, [])
        if len(pool) < 25:
            pool.append(
                {
                    "prompt": _draw(rng, *work.prompt),
                    "output": _draw(rng, *work.output),
                    "reasoning": _draw(rng, *work.reasoning),
                    "hash": short_hash(f"{work.feature}:{len(pool)}"),
                }
            )
        shape = rng.choice(pool)
        prompt, output, reasoning, request_hash = shape["prompt"], shape["output"], shape["reasoning"], shape["hash"]
    else:
        prompt, output, reasoning = _draw(rng, *work.prompt), _draw(rng, *work.output), _draw(rng, *work.reasoning)
        request_hash = short_hash(f"{work.feature}:{rng.getrandbits(64)}")
    if work.long_context_rate and rng.random() < work.long_context_rate:
        prompt = 200_000 + _draw(rng, 30_000, 15_000)
    if work.max_tokens:
        output = min(output, work.max_tokens)
    prefix_hash = None
    if work.prefix:
        name = work.prefix.replace(":user", f":{user}")
        prefix_hash = "prefix:" + short_hash(name)
    failed = rng.random() < work.error_rate
    latency = work.base_latency_ms + round((output + reasoning) * work.ms_per_output_token) + rng.randrange(0, 300)
    return {
        "timestamp": midnight
        + timedelta(seconds=_second_of_day(rng, work.interactive), milliseconds=rng.randrange(1000)),
        "provider": work.provider,
        "model": work.model,
        "input_tokens": work.prefix_tokens + prompt,
        "cached_input_tokens": 0,
        "cache_write_tokens": 0,
        "output_tokens": 0 if failed else output,
        "reasoning_tokens": 0 if failed else reasoning,
        "latency_ms": latency,
        "status": "error" if failed else "ok",
        "feature": work.feature,
        "end_user": user,
        "prefix_hash": prefix_hash,
        "prefix_tokens": work.prefix_tokens if prefix_hash else None,
        "request_hash": request_hash,
        "max_tokens": work.max_tokens,
        "interactive": work.interactive,
    }


def write(rows: Iterator[dict[str, Any]], out: TextIO, fmt: str) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    k: ("" if row[k] is None else str(row[k]).lower() if isinstance(row[k], bool) else row[k])
                    for k in FIELDS
                }
            )
            count += 1
    else:
        for row in rows:
            out.write(json.dumps({k: row[k] for k in FIELDS}, separators=(",", ":")) + "\n")
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m functions.agent.usage.generate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="support_chatbot")
    parser.add_argument("--days", type=int, default=7, help="days of traffic (1-366), default 7")
    parser.add_argument("--requests-per-day", type=int, default=None, help="default: the profile's own volume")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--start", type=date.fromisoformat, default=None, help="first day, YYYY-MM-DD (default: DAYS days ago, UTC)"
    )
    parser.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    parser.add_argument("-o", "--output", default="-", help="file to write, - for stdout")
    parser.add_argument("--list", action="store_true", help="list the profiles and exit")
    args = parser.parse_args(argv)
    if args.list:
        for profile in PROFILES.values():
            print(f"{profile.name}: {profile.description} ({profile.requests_per_day} requests/day)")
        return 0
    try:
        rows = generate(args.profile, args.days, args.requests_per_day, args.seed, args.start)
        if args.output == "-":
            count = write(rows, sys.stdout, args.format)
        else:
            with open(args.output, "w", encoding="utf-8", newline="") as out:
                count = write(rows, out, args.format)
    except ValueError as exc:
        parser.error(str(exc))
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        return 0
    print(f"wrote {count} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
