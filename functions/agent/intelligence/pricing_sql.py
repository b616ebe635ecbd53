"""Exact pricing inside SQL: the catalog's rates are passed as numeric arrays (a ``rates`` CTE), token sums are
grouped per model and tier, and cost = sum over the five buckets of tokens x rate. Cost is linear in tokens, so
pricing grouped sums is exactly the sum of per-call costs (``shared.pricing.cost_usd``), to the last digit.

Also the period of a user's data (monthly projections) and the rounding used everywhere (cents, half up).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from typing import Any

from shared.pricing import Price, Rates, data_version, get_price, known_models, price_periods

BIG = 9_000_000_000_000_000_000  # "no long-context tier": a threshold no prompt reaches
DAYS_PER_MONTH = Decimal(30)
CENT = Decimal("0.01")
TOKEN_COLUMNS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
RATES_COLUMNS = (
    "model",
    "pday",
    "since_ts",
    "until_ts",
    "lc_above",
    "min_cache",
    "has_cache",
    "b_in",
    "b_cached",
    "b_write",
    "b_out",
    "b_reas",
    "l_in",
    "l_cached",
    "l_write",
    "l_out",
    "l_reas",
)


ANALYSIS_WORK_MEM = "64MB"


def analysis_settings(tx: Any, hash_aggregate: bool = True) -> None:
    """Planner settings of an analysis transaction (SET LOCAL: they end with it).

    work_mem: room for a few hundred thousand groups (the default 4MB spills a large account's group-by to
    disk). The planner cannot estimate how few groups a multi-column GROUP BY of usage records has (it assumes
    up to one per row) and then sorts the whole table to disk instead of hashing a few thousand groups: sorting
    is discouraged. ``hash_aggregate=False`` discourages hashing too, so groups stream in the order of an index
    that has it (the duplicate scan: index-only over (user_id, model, request_hash) INCLUDE tokens)."""
    tx.execute(f"SET LOCAL work_mem = '{ANALYSIS_WORK_MEM}'")
    tx.execute("SET LOCAL enable_sort = off")
    if not hash_aggregate:
        tx.execute("SET LOCAL enable_hashagg = off")


def query(db: Any, sql: str, params: list[Any], hash_aggregate: bool = True) -> list[dict[str, Any]]:
    with db.transaction() as tx:
        analysis_settings(tx, hash_aggregate)
        return tx.all(sql, params)


def usd(value: Decimal | int | float | None) -> float:
    """Money as shown and compared: rounded half up to the cent."""
    return float(Decimal(str(value or 0)).quantize(CENT, rounding=ROUND_HALF_UP))


def pct(part: Decimal | int | float, whole: Decimal | int | float, places: str = "0.1") -> float:
    whole_d = Decimal(str(whole or 0))
    if whole_d == 0:
        return 0.0
    return float((Decimal(str(part or 0)) * 100 / whole_d).quantize(Decimal(places), rounding=ROUND_HALF_UP))


def _bucket_rates(rates: Rates) -> list[Decimal]:
    cached = rates.cached_input if rates.cached_input is not None else rates.input
    return [rates.input, cached, rates.cache_write_rate(), rates.output, rates.reasoning]


def rates_params() -> tuple[list[Any], ...]:
    """One array per RATES_COLUMNS entry, for every catalog model (a few dozen rows: cheaper than asking which
    occur); rebuilt when the price data changes (operator refresh)."""
    return _rates_params(data_version())


@cache
def _rates_params(version: int) -> tuple[list[Any], ...]:
    columns: list[list[Any]] = [[] for _ in RATES_COLUMNS]
    for price in (p for model in known_models() for p in price_periods(model)):
        long = price.long_context[0] if price.long_context else None
        base = _bucket_rates(price.base)
        values = [
            price.model,
            price.since or EVER,
            # Period bounds as instants (UTC midnights): the join compares the record's ts directly, with no
            # per-row time-zone conversion (measured: a date conversion per row doubled the facts scan).
            f"{price.since.isoformat()} 00:00:00+00" if price.since else "-infinity",
            f"{price.until.isoformat()} 00:00:00+00" if price.until else "infinity",
            long.above_input_tokens if long else BIG,
            price.min_cacheable_tokens,
            price.base.cached_input is not None,
            *base,
            *(_bucket_rates(long.rates) if long else base),
        ]
        for column, value in zip(columns, values, strict=True):
            column.append(str(value) if isinstance(value, Decimal) else value)
    return tuple(columns)


# One row per (model, price period): pday is the period's first day (EVER: since ever), [since_ts, until_ts) its
# instants. A record takes the rates of the period its UTC day falls in (RATE_JOIN);
# grouped rows keep pday so that Python prices them with the same period (price_of(model, pday)).
RATES_CTE = (
    "rates AS (SELECT * FROM unnest(%s::text[], %s::date[], %s::timestamptz[], %s::timestamptz[], %s::bigint[], "
    "%s::int[], %s::bool[], " + ", ".join(["%s::numeric[]"] * 10) + ") AS r(" + ", ".join(RATES_COLUMNS) + "))"
)
EVER = date(1970, 1, 1)
RATE_JOIN = "r.model = u.model AND u.ts >= r.since_ts AND u.ts < r.until_ts"
GROUP_RATE_JOIN = "r.model = g.model AND r.pday = g.pday"
PROMPT = "(u.input_tokens + u.cached_input_tokens + u.cache_write_tokens)"
LC = f"({PROMPT} > COALESCE(r.lc_above, {BIG}))"
COST = """(CASE WHEN g.lc
                THEN g.i * r.l_in + g.c * r.l_cached + g.w * r.l_write + g.o * r.l_out + g.rs * r.l_reas
                ELSE g.i * r.b_in + g.c * r.b_cached + g.w * r.b_write + g.o * r.b_out + g.rs * r.b_reas
           END) / 1000000"""


@dataclass(frozen=True)
class Period:
    records: int
    first_ts: datetime | None
    last_ts: datetime | None

    @property
    def days(self) -> int:
        """Calendar days (UTC) from the first to the last record, both included."""
        if self.first_ts is None or self.last_ts is None:
            return 0
        return (self.last_ts.date() - self.first_ts.date()).days + 1

    def monthly(self, amount: Decimal | int) -> Decimal:
        """A period amount scaled to a 30-day month."""
        if not self.days:
            return Decimal(0)
        return Decimal(amount) * DAYS_PER_MONTH / self.days

    def describe(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "first_ts": self.first_ts.isoformat() if self.first_ts else None,
            "last_ts": self.last_ts.isoformat() if self.last_ts else None,
            "period_days": self.days,
            "first_day": self.first_ts.date().isoformat() if self.first_ts else None,
            "last_day": self.last_ts.date().isoformat() if self.last_ts else None,
        }


def price_of(model: str, pday: date | None = None) -> Price | None:
    """The price of a model in the period starting on ``pday`` (a grouped row's pday; today's when None)."""
    try:
        return get_price(model, pday)
    except KeyError:
        return None


def tokens_of(row: dict[str, Any]) -> dict[str, int]:
    return {
        "input_tokens": int(row["i"]),
        "cached_input_tokens": int(row["c"]),
        "cache_write_tokens": int(row["w"]),
        "output_tokens": int(row["o"]),
        "reasoning_tokens": int(row["rs"]),
    }


def bucket_costs(rates: Rates, tokens: dict[str, int] | dict[str, Decimal]) -> dict[str, Decimal]:
    """Cost per token bucket of token sums at the given rates (unrounded)."""
    per = dict(zip(TOKEN_COLUMNS, _bucket_rates(rates), strict=True))
    return {k: Decimal(tokens[k]) * per[k] / 1_000_000 for k in TOKEN_COLUMNS}


def rates_for_group(price: Price, lc: bool) -> Rates:
    return price.long_context[0].rates if lc and price.long_context else price.base
