"""The savings plan: the recommendations applied together, in one stated order, segment by segment.

Stand-alone, each savings tool prices its change on today's traffic; added up, those figures count twice the
savings of two changes to the same traffic (caching a prefix and moving the same requests to a cheaper model).
The plan instead prices every segment (model, feature, interactive, long-context tier) once per change, in this
order, each change on the traffic the previous ones left and at the prices and limits of the model the traffic
ends on:

1. response cache: repeats of identical requests are answered from the cache before anything else prices them
   ((n - 1) of n identical requests; their prefix tokens leave the prompt-cache windows too);
2. right-sizing: the segment moves to the target model, whose prices, long-context tier, minimum cacheable
   prefix, cache and batch tiers apply to every later step;
3. long context: the segment is priced at its model's base tier;
4. output trimming: visible output tokens shrink by the stated share;
5. prompt caching: each repeated prefix at or above the final model's minimum is written once per window and
   read by the others, where that saves money at the rates in force (batch rates when batched);
6. batch: background segments at the final model's batch rates (none if it has no batch tier); where the
   provider does not stack the discounts, cached tokens are billed at the batch input rate.

Alternatives: right-sizing a feature is compared with keeping its model (with every other change of the plan
either way), and on each background segment caching and batch are compared alone and together; the plan keeps
the cheaper choice and says why the other is left out. Each recommendation shows its stand-alone saving (the
plan with only that change) beside its marginal saving in the plan (what it adds at its place in the order);
the marginal savings add up to the plan's total, the only total the report states.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from functions.agent.intelligence.facts import Facts, cache_rows, repeats
from functions.agent.intelligence.opportunities import _target_rates, batch_rates
from functions.agent.intelligence.pricing_sql import DAYS_PER_MONTH, TOKEN_COLUMNS, bucket_costs, price_of, usd
from shared.pricing import Price, Rates

ORDER = ("response_cache", "rightsizing", "long_context", "output_trimming", "prompt_caching", "batch")
STEP_NAMES = {
    "response_cache": "response cache",
    "rightsizing": "right-sizing",
    "long_context": "long-context avoidance",
    "output_trimming": "output trimming",
    "prompt_caching": "prompt caching",
    "batch": "batch",
}
NONE_FEATURE = "(none)"
CACHE_FIELDS = (("cacheable", "s"), ("writes", "writes"), ("cacheable_kept", "s_kept"), ("writes_kept", "writes_kept"))
ZERO = Decimal(0)


# -- inputs (an analysis tool, so that they are rolled up and every plan figure traces to a tool result) ------
def plan_segments(facts: Facts, ttl_minutes: int = 5) -> dict[str, Any]:
    """Per segment (model, feature, interactive, long-context tier) of priced models: requests and token sums,
    the part a response cache would answer, and the prompt-cache rows per prefix. Sums are exact decimals
    written as strings (they hold fractions of repeated requests)."""
    units: dict[tuple[Any, ...], dict[str, Any]] = {}

    def unit(model: str, feature: str | None, interactive: bool | None, lc: bool, pday: date) -> dict[str, Any]:
        key = (model, feature or NONE_FEATURE, interactive, bool(lc), pday.isoformat())
        if key not in units:
            units[key] = {
                "model": key[0],
                "feature": key[1],
                "interactive": interactive,
                "lc": key[3],
                "price_period": key[4],
                "requests": 0,
                "tokens": [ZERO] * 5,
                "repeats": [ZERO] * 6,
                "cache": [],
            }
        return units[key]

    for r in facts.segments:
        if price_of(r["model"], r["pday"]) is None:
            continue
        u = unit(r["model"], r["feature"], r["interactive"], r["lc"], r["pday"])
        u["requests"] += int(r["n"])
        u["tokens"] = [a + Decimal(r[k]) for a, k in zip(u["tokens"], ("i", "c", "w", "o", "rs"), strict=True)]
    for r in repeats(facts):
        if price_of(r["model"], r["pday"]) is None:
            continue
        u = unit(r["model"], r["feature"], r["interactive"], r["lc"], r["pday"])
        u["repeats"] = [a + Decimal(r[k]) for a, k in zip(u["repeats"], ("n", "i", "c", "w", "o", "rs"), strict=True)]
    for r in cache_rows(facts, ttl_minutes):
        if price_of(r["model"], r["pday"]) is None:
            continue
        # Maps, not lists: the result is streamed into the Firestore event log, which takes no array in an array.
        unit(r["model"], r["feature"], r["interactive"], r["lc"], r["pday"])["cache"].append(
            {
                "prefix_hash": str(r["prefix_hash"]),
                "prefix_tokens": int(r["prefix_tokens"]),
                **{name: str(Decimal(r[k])) for name, k in CACHE_FIELDS},
            }
        )
    ordered = sorted(
        units.values(), key=lambda u: (u["model"], u["feature"], str(u["interactive"]), u["lc"], u["price_period"])
    )
    for u in ordered:
        u["tokens"] = [str(v) for v in u["tokens"]]
        u["repeats"] = [str(v) for v in u["repeats"]]
        u["cache"].sort(key=lambda c: (c["prefix_hash"], c["prefix_tokens"]))
    return {
        "ttl_minutes": ttl_minutes,
        "period_days": facts.period.days,
        "token_columns": list(TOKEN_COLUMNS),
        "segments": ordered,
    }


# -- the engine -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CacheRow:
    prefix_tokens: int
    s: Decimal
    writes: Decimal
    s_kept: Decimal
    writes_kept: Decimal


@dataclass(frozen=True)
class Segment:
    model: str
    feature: str
    interactive: bool | None
    lc: bool
    pday: date  # first day of the price period its records were priced in
    requests: int
    tokens: tuple[Decimal, ...]  # i, c, w, o, rs
    repeats: tuple[Decimal, ...]  # i, c, w, o, rs of the repeats a response cache answers
    cache: tuple[CacheRow, ...]

    @property
    def label(self) -> str:
        return f"{self.feature} on {self.model}"


@dataclass
class Choice:
    """The recommendations applied to one segment (by kind) and the target / reduction they carry."""

    recs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def only(self, kinds: Iterable[str]) -> Choice:
        keep = set(kinds)
        return Choice({k: v for k, v in self.recs.items() if k in keep})


def _segments(inputs: dict[str, Any]) -> list[Segment]:
    out = []
    for u in inputs["segments"]:
        out.append(
            Segment(
                model=u["model"],
                feature=u["feature"],
                interactive=u["interactive"],
                lc=bool(u["lc"]),
                pday=date.fromisoformat(u["price_period"]),
                requests=int(u["requests"]),
                tokens=tuple(Decimal(v) for v in u["tokens"]),
                repeats=tuple(Decimal(v) for v in u["repeats"][1:]),
                cache=tuple(
                    CacheRow(
                        int(c["prefix_tokens"]),
                        *(Decimal(c[name]) for name in ("cacheable", "writes", "cacheable_kept", "writes_kept")),
                    )
                    for c in u["cache"]
                ),
            )
        )
    return out


def _applies(rec: dict[str, Any], seg: Segment) -> bool:
    """Whether a recommendation touches a segment: per-model ones all of the model's traffic (batch only its
    background part, long context only its long-context part), per-feature ones that feature on that model."""
    if rec["model"] != seg.model:
        return False
    kind = rec["kind"]
    if kind in ("rightsizing", "output_trimming"):
        return rec["feature"] == seg.feature
    if kind == "batch":
        return seg.interactive is False
    if kind == "long_context":
        return seg.lc
    return kind in ("response_cache", "prompt_caching")


def _price(seg: Segment, choice: Choice) -> Price:
    rec = choice.recs.get("rightsizing")
    # The model the traffic ends on, at the price it had in the segment's price period.
    price = price_of(rec["details"]["target_model"] if rec else seg.model, seg.pday)
    assert price is not None  # plan_segments keeps priced models; targets come from the catalog
    return price


def cost(seg: Segment, choice: Choice) -> Decimal:
    """The period cost of a segment with the chosen recommendations applied (see the module docstring)."""
    recs = choice.recs
    price = _price(seg, choice)
    # The long-context tier of the segment on the model it ends on, unless prompts are kept under it.
    rates: Rates = price.base if "long_context" in recs else _target_rates(price, seg.lc)
    batched = "batch" in recs and price.batch is not None
    if batched:
        rates = batch_rates(price, rates)
    kept = "response_cache" in recs
    i, c, w, o, rs = (t - r for t, r in zip(seg.tokens, seg.repeats, strict=True)) if kept else seg.tokens
    if "output_trimming" in recs:
        o = o * (1 - Decimal(recs["output_trimming"]["details"]["reduction_pct"]) / 100)
    if "prompt_caching" in recs and price.base.cached_input is not None:
        minimum = price.min_cacheable_tokens or 0
        cached_rate = rates.cached_input if rates.cached_input is not None else rates.input
        for row in seg.cache:
            if row.prefix_tokens < minimum:
                continue
            s, writes = (row.s_kept, row.writes_kept) if kept else (row.s, row.writes)
            if s * rates.input <= writes * rates.cache_write_rate() + (s - writes) * cached_rate:
                continue  # read too rarely within its lifetime to pay for the writes
            i, c, w = i - s, c + s - writes, w + writes
    tokens = dict(zip(TOKEN_COLUMNS, (i, c, w, o, rs), strict=True))
    return sum(bucket_costs(rates, tokens).values(), ZERO)


def _best(seg: Segment, base: Choice, optional: list[dict[str, Any]]) -> tuple[Choice, Decimal]:
    """The cheapest subset of the optional recommendations (caching, batch) on top of ``base``; on a tie the
    one with fewer changes."""
    best, best_cost = base, cost(seg, base)
    subsets: list[list[dict[str, Any]]] = [[r] for r in optional]
    if len(optional) == 2:
        subsets.append(list(optional))
    for subset in subsets:
        trial = Choice({**base.recs, **{r["kind"]: r for r in subset}})
        value = cost(seg, trial)
        if value < best_cost:
            best, best_cost = trial, value
    return best, best_cost


def _why_not(seg: Segment, choice: Choice, rec: dict[str, Any]) -> str:
    """Why caching or batch, which saves on its own, adds nothing to a segment's chosen recommendations."""
    price = _price(seg, choice)
    moved = f"on {price.model}, where the traffic moves, " if price.model != seg.model else ""
    if rec["kind"] == "batch":
        if price.batch is None:
            return f"{moved}there is no batch tier"
        if "prompt_caching" in choice.recs and not price.batch_stacks_with_cache:
            return f"prompt caching saves more there, and {price.provider} gives no cache discount on batch requests"
        return "the rest of the plan leaves nothing for it to save"
    if price.base.cached_input is None:
        return f"{moved}there is no prompt caching"
    minimum = price.min_cacheable_tokens or 0
    if all(row.prefix_tokens < minimum for row in seg.cache):
        return f"{moved}prefixes must have at least {minimum:,} tokens to be cached"
    if "batch" in choice.recs and not price.batch_stacks_with_cache:
        return f"batch saves more there, and {price.provider} gives no cache discount on batch requests"
    return "the rest of the plan leaves nothing for it to save"


def _money(value: Decimal) -> str:
    return f"${usd(value):,.2f}"


def savings_plan(inputs: dict[str, Any], recs: list[dict[str, Any]], chosen: list[str] | None = None) -> dict[str, Any]:
    """The plan of the chosen recommendations (all when None) over the segments of ``plan_segments``."""
    by_id = {r["id"]: r for r in recs}
    unknown = [c for c in (chosen or []) if c not in by_id]
    if unknown:
        raise ValueError(f"unknown recommendation ids: {', '.join(unknown)}")
    selected = [by_id[c] for c in chosen] if chosen is not None else list(recs)
    days = int(inputs.get("period_days") or 0)

    def monthly(amount: Decimal) -> Decimal:
        return amount * DAYS_PER_MONTH / days if days else ZERO

    segments = _segments(inputs)
    applicable = {id(s): [r for r in selected if _applies(r, s)] for s in segments}
    baseline = {id(s): cost(s, Choice()) for s in segments}

    def settle(seg: Segment, rightsize: bool) -> tuple[Choice, Decimal]:
        mine = applicable[id(seg)]
        fixed = {r["kind"]: r for r in mine if r["kind"] in ("response_cache", "long_context", "output_trimming")}
        if rightsize:
            fixed["rightsizing"] = next(r for r in mine if r["kind"] == "rightsizing")
        optional = [r for r in mine if r["kind"] in ("prompt_caching", "batch")]
        return _best(seg, Choice(fixed), optional)

    # Right-sizing is decided per (model, feature) over all its segments: a feature moves as a whole.
    decided: dict[int, Choice] = {}
    left_out: dict[str, list[str]] = {}
    groups: dict[str, list[Segment]] = {}
    for seg in segments:
        rs = next((r for r in applicable[id(seg)] if r["kind"] == "rightsizing"), None)
        if rs is None:
            decided[id(seg)] = settle(seg, False)[0]
        else:
            groups.setdefault(rs["id"], []).append(seg)
    for rec_id, segs in groups.items():
        with_rs = [settle(s, True) for s in segs]
        without = [settle(s, False) for s in segs]
        cost_with = sum((c for _, c in with_rs), ZERO)
        cost_without = sum((c for _, c in without), ZERO)
        chosen_set = with_rs if cost_with < cost_without else without
        for seg, (choice, _) in zip(segs, chosen_set, strict=True):
            decided[id(seg)] = choice
        if cost_with >= cost_without:
            rec = by_id[rec_id]
            target = price_of(rec["details"]["target_model"], segs[0].pday)
            why = (
                f"left out: keeping {rec['model']} for {rec['feature']} with the rest of the plan costs "
                f"{_money(monthly(cost_without))} a month, moving it to {rec['details']['target_model']} "
                f"{_money(monthly(cost_with))}"
            )
            lost_cache = target is not None and any(
                row.prefix_tokens < (target.min_cacheable_tokens or 0) or target.base.cached_input is None
                for s in segs
                for row in s.cache
            )
            if lost_cache and any(r["kind"] == "prompt_caching" for s in segs for r in applicable[id(s)]):
                why += (
                    f" (its prompts cannot be cached there: {target.model} caches prefixes of at least "
                    f"{target.min_cacheable_tokens or 0:,} tokens)"
                    if target.base.cached_input is not None
                    else f" ({target.model} has no prompt caching)"
                )
            left_out.setdefault(rec_id, []).append(why)

    # Marginal savings: each segment's chosen recommendations applied one at a time in ORDER.
    marginal: dict[str, Decimal] = {r["id"]: ZERO for r in selected}
    alone: dict[str, Decimal] = {r["id"]: ZERO for r in selected}
    final: dict[int, Decimal] = {}
    model_cost: dict[str, list[Decimal]] = {}
    for seg in segments:
        choice = decided[id(seg)]
        before = baseline[id(seg)]
        kinds: list[str] = []
        for kind in ORDER:
            if kind not in choice.recs:
                continue
            kinds.append(kind)
            after = cost(seg, choice.only(kinds))
            marginal[choice.recs[kind]["id"]] += before - after
            before = after
        final[id(seg)] = before
        for rec in applicable[id(seg)]:
            saving = baseline[id(seg)] - cost(seg, Choice({rec["kind"]: rec}))
            alone[rec["id"]] += max(saving, ZERO)
            if rec["kind"] in ("prompt_caching", "batch") and rec["kind"] not in choice.recs and saving > 0:
                left_out.setdefault(rec["id"], []).append(f"left out on {seg.label}: {_why_not(seg, choice, rec)}")
        m = model_cost.setdefault(seg.model, [ZERO, ZERO])
        m[0] += baseline[id(seg)]
        m[1] += baseline[id(seg)] - before

    total_base = sum(baseline.values(), ZERO)
    total_saved = total_base - sum(final.values(), ZERO)
    steps = []
    for rec in sorted(selected, key=lambda r: (ORDER.index(r["kind"]), r.get("rank", 0), r["id"])):
        used = marginal[rec["id"]] != 0 or not left_out.get(rec["id"])
        status = "in plan" if not left_out.get(rec["id"]) else ("partly" if used else "left out")
        steps.append(
            {
                "id": rec["id"],
                "kind": rec["kind"],
                "step": ORDER.index(rec["kind"]) + 1,
                "title": rec["title"],
                "model": rec["model"],
                "feature": rec.get("feature"),
                "standalone_monthly_usd": usd(monthly(alone[rec["id"]])),
                "marginal_monthly_usd": usd(monthly(marginal[rec["id"]])),
                "status": status,
                "notes": left_out.get(rec["id"], []),
            }
        )
    base_month = monthly(total_base)
    saved_month = monthly(total_saved)
    return {
        "order": [STEP_NAMES[k] for k in ORDER],
        "chosen": [r["id"] for r in selected],
        "period_days": days,
        "baseline_monthly_usd": usd(base_month),
        "optimized_monthly_usd": usd(base_month - saved_month),
        "monthly_savings_usd": usd(saved_month),
        "savings_pct": float((saved_month * 100 / base_month).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))
        if base_month
        else 0.0,
        "in_plan": sum(1 for s in steps if s["status"] != "left out"),
        "steps": steps,
        "by_model": [
            {"model": model, "monthly_cost_usd": usd(monthly(c)), "monthly_savings_usd": usd(monthly(s))}
            for model, (c, s) in sorted(model_cost.items(), key=lambda kv: (-kv[1][1], kv[0]))
            if s > 0
        ],
    }
