"""The facts one analysis run shares: the data period and one grouped scan of the user's records ("segments":
token sums and exact cost per model, tier, feature, interactivity and status). Most tools derive from the
segments, so a run scans the table once for them instead of once per tool.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from functions.agent.intelligence.pricing_sql import Period, period, price_of, priced_groups


@dataclass
class Agg:
    """Sums over groups: requests, the five token buckets and cost (None-priced groups add tokens only)."""

    n: int = 0
    i: int = 0
    c: int = 0
    w: int = 0
    o: int = 0
    rs: int = 0
    cost: Decimal = field(default_factory=Decimal)
    unpriced: int = 0

    def add(self, row: dict[str, Any]) -> Agg:
        self.n += int(row["n"])
        self.i += int(row["i"])
        self.c += int(row["c"])
        self.w += int(row["w"])
        self.o += int(row["o"])
        self.rs += int(row["rs"])
        if row.get("cost") is None:
            self.unpriced += int(row["n"])
        else:
            self.cost += Decimal(row["cost"])
        return self

    @property
    def input_all(self) -> int:
        return self.i + self.c + self.w

    @property
    def output_all(self) -> int:
        return self.o + self.rs

    def tokens(self) -> dict[str, int]:
        return {"input_tokens": self.i, "cached_input_tokens": self.c, "cache_write_tokens": self.w,
                "output_tokens": self.o, "reasoning_tokens": self.rs}


def group(rows: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], Hashable]) -> dict[Any, Agg]:
    out: dict[Any, Agg] = {}
    for row in rows:
        out.setdefault(key(row), Agg()).add(row)
    return out


class Facts:
    """Lazily computed, memoised facts of one user's data for one run (or one rollup job pass)."""

    def __init__(self, db: Any, user_id: str) -> None:
        self.db = db
        self.user_id = user_id
        self._period: Period | None = None
        self._segments: list[dict[str, Any]] | None = None
        self._days: list[dict[str, Any]] | None = None

    @property
    def period(self) -> Period:
        if self._period is None:
            self._period = period(self.db, self.user_id)
        return self._period

    @property
    def segments(self) -> list[dict[str, Any]]:
        if self._segments is None:
            self._segments = priced_groups(
                self.db, self.user_id,
                {"feature": "u.feature", "interactive": "u.interactive", "ok": "(u.status = 'ok')"},
                extra=", count(u.max_tokens) AS n_max_tokens, COALESCE(sum(u.max_tokens), 0) AS sum_max_tokens")
        return self._segments

    @property
    def days(self) -> list[dict[str, Any]]:
        if self._days is None:
            self._days = priced_groups(self.db, self.user_id,
                                       {"day": "to_char(u.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD')"})
        return self._days

    def total(self) -> Agg:
        return group(self.segments, lambda r: None).get(None, Agg())

    def monthly(self, amount: Decimal) -> Decimal:
        return self.period.monthly(amount)

    def priced_models(self) -> dict[str, Any]:
        return {r["model"]: price_of(r["model"]) for r in self.segments}
