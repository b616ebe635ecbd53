"""Exact pricing inside SQL: the catalog's rates are passed as numeric arrays (a ``rates`` CTE), token sums are
grouped per model and tier, and cost = sum over the five buckets of tokens x rate. Cost is linear in tokens, so
pricing grouped sums is exactly the sum of per-call costs (``shared.pricing.cost_usd``), to the last digit.

Also the period of a user's data (monthly projections) and the rounding used everywhere (cents, half up).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from typing import Any

from shared.pricing import Price, Rates, get_price, known_models

BIG = 9_000_000_000_000_000_000  # "no long-context tier": a threshold no prompt reaches
DAYS_PER_MONTH = Decimal(30)
CENT = Decimal("0.01")
TOKEN_COLUMNS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
RATES_COLUMNS = ("model", "lc_above", "min_cache", "has_cache",
                 "b_in", "b_cached", "b_write", "b_out", "b_reas", "l_in", "l_cached", "l_write", "l_out", "l_reas")


ANALYSIS_WORK_MEM = "64MB"


def query(db: Any, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    """An analysis query with enough sort/hash memory for a few hundred thousand groups (the default 4MB makes
    Postgres spill group-bys of a large account to disk); SET LOCAL ends with the transaction."""
    with db.transaction() as tx:
        tx.execute(f"SET LOCAL work_mem = '{ANALYSIS_WORK_MEM}'")
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


@cache
def rates_params() -> tuple[list[Any], ...]:
    """One array per RATES_COLUMNS entry, for every catalog model (33 rows: cheaper than asking which occur)."""
    columns: list[list[Any]] = [[] for _ in RATES_COLUMNS]
    for model in known_models():
        price = get_price(model)
        long = price.long_context[0] if price.long_context else None
        base = _bucket_rates(price.base)
        values = [model, long.above_input_tokens if long else BIG, price.min_cacheable_tokens,
                  price.base.cached_input is not None, *base, *(_bucket_rates(long.rates) if long else base)]
        for column, value in zip(columns, values, strict=True):
            column.append(str(value) if isinstance(value, Decimal) else value)
    return tuple(columns)


RATES_CTE = ("rates AS (SELECT * FROM unnest(%s::text[], %s::bigint[], %s::int[], %s::bool[], "
             + ", ".join(["%s::numeric[]"] * 10) + ") AS r(" + ", ".join(RATES_COLUMNS) + "))")
PROMPT = "(u.input_tokens + u.cached_input_tokens + u.cache_write_tokens)"
LC = f"({PROMPT} > COALESCE(r.lc_above, {BIG}))"
COST = """(CASE WHEN g.lc
                THEN g.i * r.l_in + g.c * r.l_cached + g.w * r.l_write + g.o * r.l_out + g.rs * r.l_reas
                ELSE g.i * r.b_in + g.c * r.b_cached + g.w * r.b_write + g.o * r.b_out + g.rs * r.b_reas
           END) / 1000000"""
SUMS = """count(*) AS n, sum(u.input_tokens) AS i, sum(u.cached_input_tokens) AS c, sum(u.cache_write_tokens) AS w,
          sum(u.output_tokens) AS o, sum(u.reasoning_tokens) AS rs"""


def priced_groups(db: Any, user_id: str, dims: dict[str, str], where: str = "", params: list[Any] | None = None,
                  extra: str = "") -> list[dict[str, Any]]:
    """Token sums and exact cost per (dims..., model, lc). ``dims`` maps an alias to an SQL expression over ``u``
    (usage_records); ``extra`` adds aggregate columns (``, max(u.x) AS y``). ``cost`` is None for a model the
    catalog does not price."""
    dim_select = "".join(f"{expr} AS {alias}, " for alias, expr in dims.items())
    dim_group = "".join(f"{alias}, " for alias in dims)
    sql = f"""
        WITH {RATES_CTE},
        g AS (SELECT {dim_select} u.model, u.provider, {LC} AS lc, {SUMS},
                     max({PROMPT}) AS max_prompt, max(u.output_tokens) AS max_output {extra}
                FROM usage_records u LEFT JOIN rates r ON r.model = u.model
               WHERE u.user_id = %s {where}
               GROUP BY {dim_group} u.model, u.provider, lc)
        SELECT g.*, {COST} AS cost FROM g LEFT JOIN rates r ON r.model = g.model"""
    return query(db, sql, [*rates_params(), user_id, *(params or [])])


def top_by_cost(db: Any, user_id: str, key_expr: str, limit: int, where: str = "",
                params: list[Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The ``limit`` most expensive keys (cost and token sums per key, in SQL, for high-cardinality keys such
    as end users) and the totals of all keys: (rows, {"keys", "n", "cost"})."""
    sql = f"""
        WITH {RATES_CTE},
        g AS (SELECT {key_expr} AS key, u.model, {LC} AS lc, {SUMS}
                FROM usage_records u LEFT JOIN rates r ON r.model = u.model
               WHERE u.user_id = %s {where}
               GROUP BY 1, 2, 3),
        k AS (SELECT g.key, sum(g.n) AS n, sum(g.i) AS i, sum(g.c) AS c, sum(g.w) AS w, sum(g.o) AS o,
                     sum(g.rs) AS rs, COALESCE(sum({COST}), 0) AS cost
                FROM g LEFT JOIN rates r ON r.model = g.model GROUP BY g.key)
        SELECT *, count(*) OVER () AS keys, sum(n) OVER () AS all_n, sum(cost) OVER () AS all_cost
          FROM k ORDER BY cost DESC, key NULLS LAST LIMIT %s"""
    rows = query(db, sql, [*rates_params(), user_id, *(params or []), limit])
    totals = {"keys": int(rows[0]["keys"]) if rows else 0, "n": int(rows[0]["all_n"]) if rows else 0,
              "cost": Decimal(rows[0]["all_cost"]) if rows else Decimal(0)}
    return rows, totals


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
        return {"records": self.records, "first_ts": self.first_ts.isoformat() if self.first_ts else None,
                "last_ts": self.last_ts.isoformat() if self.last_ts else None, "period_days": self.days,
                "first_day": self.first_ts.date().isoformat() if self.first_ts else None,
                "last_day": self.last_ts.date().isoformat() if self.last_ts else None}


def period(db: Any, user_id: str) -> Period:
    # Timestamps are compared as UTC dates: the session time zone must not shift a day boundary.
    row = db.one("""SELECT count(*) AS n, min(ts) AS first_ts, max(ts) AS last_ts
                      FROM usage_records WHERE user_id = %s""", [user_id]) or {}
    first, last = row.get("first_ts"), row.get("last_ts")
    from datetime import UTC

    return Period(int(row.get("n") or 0), first.astimezone(UTC) if first else None,
                  last.astimezone(UTC) if last else None)


def price_of(model: str) -> Price | None:
    try:
        return get_price(model)
    except KeyError:
        return None


def tokens_of(row: dict[str, Any]) -> dict[str, int]:
    return {"input_tokens": int(row["i"]), "cached_input_tokens": int(row["c"]),
            "cache_write_tokens": int(row["w"]), "output_tokens": int(row["o"]), "reasoning_tokens": int(row["rs"])}


def bucket_costs(rates: Rates, tokens: dict[str, int] | dict[str, Decimal]) -> dict[str, Decimal]:
    """Cost per token bucket of token sums at the given rates (unrounded)."""
    per = dict(zip(TOKEN_COLUMNS, _bucket_rates(rates), strict=True))
    return {k: Decimal(tokens[k]) * per[k] / 1_000_000 for k in TOKEN_COLUMNS}


def rates_for_group(price: Price, lc: bool) -> Rates:
    return price.long_context[0].rates if lc and price.long_context else price.base
