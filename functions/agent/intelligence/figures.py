"""Figures in text and in tool results: the check that every number a report states comes from a tool.

Numbers inside identifiers (gpt-4o-mini, claude-sonnet-4-5, p95, o3) are not figures; ISO dates are one figure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

DATE = re.compile(r"(?<![\w.-])\d{4}-\d{2}-\d{2}(?:[T ][\d:.+-]+Z?)?(?![\w-])")
# A figure: optional $ and sign, digits with optional thousands separators and decimals, not glued to a word,
# a hyphen or a dot-digit on either side (so 2.5 in "gemini-2.5-flash" and 4 in "gpt-4o" are skipped).
NUMBER = re.compile(r"(?<![\w.\-/:@])\$?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w\-/@]|\.\d)")


def numbers_in(text: str) -> list[str]:
    """Every figure in ``text``: dates as written, numbers normalised (no $, no separators)."""
    found = [m.group(0)[:10] for m in DATE.finditer(text)]
    stripped = DATE.sub(" ", text)
    for match in NUMBER.finditer(stripped):
        found.append(match.group(1).replace(",", "") + (match.group(2) or ""))
    return found


def _norm(value: str) -> str:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return value
    try:
        return format(Decimal(value).normalize(), "f")
    except InvalidOperation:
        return value


def _walk(value: Any) -> Iterable[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _walk(item)
    else:
        yield value


def known_figures(results: Iterable[Any]) -> set[str]:
    """Normalised figures present in tool results (numbers, numeric strings, and figures inside strings)."""
    figures: set[str] = set()
    for value in _walk(list(results)):
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float | Decimal):
            figures.add(_norm(str(value)))
        elif isinstance(value, str):
            figures.update(_norm(n) for n in numbers_in(value))
    return figures


def unsupported(text: str, known: set[str]) -> list[str]:
    return [n for n in numbers_in(text) if _norm(n) not in known]


def guard_narrative(text: str, known: set[str]) -> tuple[str, list[str]]:
    """The narrative without the sentences that state a figure no tool produced: (kept text, dropped figures)."""
    kept, dropped = [], []
    for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
        bad = unsupported(sentence, known)
        if bad:
            dropped.extend(bad)
        elif sentence:
            kept.append(sentence)
    return " ".join(kept), dropped
