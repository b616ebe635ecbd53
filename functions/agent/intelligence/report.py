"""The reporting agent's markdown: tables built only from tool results (every figure printed here is a value
of some tool result, formatted), plus the guarded narrative.
"""

from __future__ import annotations

from typing import Any

from functions.agent.intelligence.analysis import NONE_KEY


def money(value: Any) -> str:
    return f"${float(value or 0):,.2f}"


def num(value: Any) -> str:
    return "n/a" if value is None else f"{value:,}"


def rate(value: Any) -> str:
    """A list price as the catalog states it (no rounding to the cent: $0.075 stays $0.075)."""
    if value is None:
        return "n/a"
    text = f"{float(value):.6f}".rstrip("0")
    return "$" + (text + "00" if text.endswith(".") else text if len(text.split(".")[1]) >= 2 else text + "0")


def pct(value: Any) -> str:
    return f"{float(value or 0):.1f}%"


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def header(overview: dict[str, Any]) -> str:
    return (
        f"Data: {num(overview['records'])} requests from {overview['first_day']} to {overview['last_day']} "
        f"({num(overview['period_days'])} days), costing {money(overview['total_cost_usd'])}, that is "
        f"{money(overview['monthly_cost_usd'])} per 30-day month at list prices."
    )


def breakdown_section(result: dict[str, Any], title: str) -> str:
    rows = [
        [
            f"`{r['key']}`" if result["by"] == "model" else r["key"],
            num(r["requests"]),
            money(r["cost_usd"]),
            money(r["monthly_cost_usd"]),
            pct(r["share_pct"]),
        ]
        for r in result["rows"]
    ]
    if result.get("other"):
        other = result["other"]
        rows.append(
            [
                f"other ({num(other['keys'])})",
                num(other["requests"]),
                money(other["cost_usd"]),
                "",
                pct(other["share_pct"]),
            ]
        )
    label = {"model": "Model", "feature": "Feature", "end_user": "End user", "day": "Day", "provider": "Provider"}[
        result["by"]
    ]
    return f"### {title}\n\n" + table([label, "Requests", "Cost", "Per month", "Share"], rows)


def drivers_section(result: dict[str, Any]) -> str:
    rows = [
        [b["bucket"].replace("_", " "), num(b["tokens"]), money(b["cost_usd"]), pct(b["share_pct"])]
        for b in result["by_bucket"]
        if b["tokens"]
    ]
    text = "### Cost drivers\n\n" + table(["Token type", "Tokens", "Cost", "Share"], rows)
    segments = [
        [
            f"`{s['model']}`",
            s["feature"],
            num(s["requests"]),
            num(s["avg_input_tokens"]),
            num(s["avg_output_tokens"]),
            money(s["monthly_cost_usd"]),
            pct(s["share_pct"]),
        ]
        for s in result["top_segments"]
    ]
    text += "\n\nLargest segments:\n\n" + table(
        ["Model", "Feature", "Requests", "Avg input", "Avg output", "Per month", "Share"], segments
    )
    failed = result["failed_requests"]
    if failed["requests"]:
        text += (
            f"\n\nFailed requests: {num(failed['requests'])} cost {money(failed['cost_usd'])} "
            f"({pct(failed['share_pct'])} of spend) and produced nothing usable."
        )
    return text


def latency_section(result: dict[str, Any]) -> str:
    def ms(value: Any) -> str:
        return "n/a" if value is None else f"{value:,} ms"

    rows = [
        [
            f"`{m['model']}`",
            num(m["measured"]),
            ms(m["p50_ms"]),
            ms(m["p90_ms"]),
            ms(m["p95_ms"]),
            ms(m["p99_ms"]),
            pct(m["error_rate_pct"]),
        ]
        for m in result["models"]
    ]
    return "### Latency by model\n\n" + table(["Model", "Measured", "p50", "p90", "p95", "p99", "Errors"], rows)


def recommendations_section(ranked: dict[str, Any], plan: dict[str, Any] | None = None) -> str:
    if not ranked["recommendations"]:
        return "### Recommendations\n\nNo change saves at least a cent a month on this data."
    steps = {s["id"]: s for s in (plan or {}).get("steps", [])}
    if not steps:
        rows = [
            [num(r["rank"]), r["title"], money(r["monthly_savings_usd"]), r["effort"], r["risk"]]
            for r in ranked["recommendations"]
        ]
        return "### Recommendations\n\nRanked by monthly savings weighed by effort and risk.\n\n" + table(
            ["Rank", "Recommendation", "Saves per month", "Effort", "Risk"], rows
        )
    rows = [
        [
            num(r["rank"]),
            r["title"],
            money(steps[r["id"]]["standalone_monthly_usd"]),
            money(steps[r["id"]]["marginal_monthly_usd"]),
            r["effort"],
            r["risk"],
        ]
        for r in ranked["recommendations"]
    ]
    return (
        "### Recommendations\n\nRanked by monthly savings weighed by effort and risk. *Alone* is what a change "
        "saves by itself; *in the plan* is what it adds when all of them are applied in the plan's order "
        "(next section). Changes to the same traffic share their savings, so only the second column adds up "
        "to the plan's total.\n\n"
        + table(["Rank", "Recommendation", "Saves alone", "Saves in the plan", "Effort", "Risk"], rows)
    )


def plan_section(plan: dict[str, Any]) -> str:
    rows = [
        [
            num(s["step"]),
            s["title"],
            money(s["standalone_monthly_usd"]),
            money(s["marginal_monthly_usd"]),
            s["status"],
        ]
        for s in plan["steps"]
    ]
    text = (
        f"### The plan: {money(plan['monthly_savings_usd'])} per month\n\n"
        "The recommendations are applied in this order, each on the traffic the previous ones leave and at the "
        "prices and limits of the model that traffic ends on: " + ", ".join(plan["order"]) + ". "
        f"The monthly cost goes from {money(plan['baseline_monthly_usd'])} to "
        f"{money(plan['optimized_monthly_usd'])} ({pct(plan['savings_pct'])} less).\n\n"
        + table(["Step", "Recommendation", "Saves alone", "Adds in the plan", "Status"], rows)
    )
    notes = [f"{s['title']}: {note}." for s in plan["steps"] for note in s["notes"][:3]]
    if notes:
        text += "\n\nWhere the plan chose between alternatives:\n\n" + "\n".join(f"- {n}" for n in notes)
    return text


def opportunity_notes(results: dict[str, Any]) -> list[str]:
    notes = []
    caching = results.get("caching_opportunity")
    if caching:
        for m in caching["models"]:
            notes.append(
                f"Prompt caching on `{m['model']}`: {num(m['cache_reads'])} of {num(m['requests'])} "
                f"requests would read a cached prefix ({pct(m['hit_rate_pct'])}), saving "
                f"{money(m['monthly_savings_usd'])} per month."
            )
        for b in caching["below_minimum"]:
            notes.append(
                f"{num(b['requests'])} requests on `{b['model']}` share a prefix shorter than the "
                f"{num(b['min_cacheable_tokens'])} tokens the provider caches."
            )
    batch = results.get("batch_opportunity")
    if batch and batch["unknown_interactive_requests"]:
        notes.append(
            f"{num(batch['unknown_interactive_requests'])} request(s) do not say whether they are "
            "interactive; mark background work to find more batch savings."
        )
    rightsizing = results.get("model_rightsizing")
    if rightsizing:
        for c in rightsizing["candidates"]:
            notes.append(
                f"`{c['model']}` / {c['feature']} to `{c['target_model']}` ({c['quality_risk']} "
                f"risk): {c['risk_note']}."
            )
    long_context = results.get("long_context")
    if long_context:
        for m in long_context["models"]:
            notes.append(
                f"{num(m['requests'])} requests on `{m['model']}` exceed {num(m['threshold_tokens'])} "
                f"prompt tokens (average {num(m['avg_prompt_tokens'])}) and pay the long-context rate."
            )
    return notes


def what_if_section(result: dict[str, Any]) -> str:
    rows = [
        [num(p["month"]), money(p["baseline_usd"]), money(p["optimized_usd"]), money(p["savings_usd"])]
        for p in result["projection"]
    ]
    return (
        f"### What if you apply them\n\nWith the plan, the monthly "
        f"cost goes from {money(result['baseline_monthly_usd'])} to {money(result['optimized_monthly_usd'])} "
        f"({pct(result['savings_pct'])} less). Usage growth assumed: {pct(result['growth_pct_per_month'])} "
        f"per month; over {num(result['months'])} months that saves {money(result['horizon_savings_usd'])}."
        "\n\n" + table(["Month", "Today's setup", "Optimized", "Saved"], rows)
    )


def plans_section(plans: dict[str, Any]) -> str:
    parts = ["### How to do it"]
    for plan in plans["plans"]:
        steps = "\n".join(f"- {step}" for step in plan["steps"])
        parts.append(
            f"**{num(plan['rank'])}. {plan['title']}**\n\n{steps}\n\n"
            f"```{plan['snippet_language']}\n{plan['snippet']}\n```"
        )
    return "\n\n".join(parts)


def prices_section(result: dict[str, Any]) -> str:
    rows = [
        [
            f"`{m['model']}`",
            m["provider"],
            m["tier"],
            rate(m["input_per_mtok"]),
            rate(m["cached_input_per_mtok"]),
            rate(m["output_per_mtok"]),
            rate(m["batch_input_per_mtok"]),
            num(m["context_window"]),
            m["date_read"],
        ]
        for m in result["models"]
    ]
    sources = sorted({m["source_url"] for m in result["models"]})
    return (
        "### List prices per million tokens\n\n"
        + table(
            ["Model", "Provider", "Tier", "Input", "Cached input", "Output", "Batch input", "Context", "Read on"], rows
        )
        + "\n\nSources: "
        + ", ".join(sources)
    )


def data_notes(overview: dict[str, Any], missing: dict[str, str]) -> str:
    notes = []
    prices = overview.get("prices")
    if prices:
        notes.append(
            f"Prices: list prices from {prices['source']} {prices['version']}, price data of {prices['data_date']}"
            + (" (refreshed at run time)" if prices["refreshed"] else "")
            + "; each call is priced at the price in force on its day (UTC)."
        )
    if overview.get("unpriced_models"):
        count = overview.get("unpriced_records")
        notes.append(
            (f"{num(count)} record(s) had no known price" if count else "No known price")
            + " (tokens counted, cost unknown): "
            + ", ".join(f"`{m}`" for m in overview["unpriced_models"])
            + "."
        )
    for field, why in missing.items():
        notes.append(f"Add `{field}` to your records to also see {why}.")
    return ("### About the data\n\n" + "\n".join(f"- {n}" for n in notes)) if notes else ""


BREAKDOWN_SECTIONS = (
    ("cost_breakdown:model", "Spend by model"),
    ("cost_breakdown:feature", "Spend by feature"),
    ("cost_breakdown:provider", "Spend by provider"),
    ("cost_breakdown:end_user", "Spend by end user"),
    ("cost_breakdown:day", "Spend by day"),
)


def full_report(
    results: dict[str, Any],
    ranked: dict[str, Any] | None,
    plan: dict[str, Any] | None,
    what_if: dict[str, Any] | None,
    plans: dict[str, Any] | None,
    narrative: str,
    missing: dict[str, str],
    title: str = "LLM cost report",
) -> str:
    overview = results["usage_overview"]
    parts = [f"## {title}", header(overview)]
    if narrative:
        parts.append(narrative)
    if ranked is not None:
        parts.append(recommendations_section(ranked, plan))
    if plan is not None and ranked and ranked["recommendations"]:
        parts.append(plan_section(plan))
    if what_if is not None and ranked and ranked["recommendations"]:
        parts.append(what_if_section(what_if))
    latency = results.get("latency_percentiles")
    if ranked is None and latency and latency["models"]:
        parts.append(latency_section(latency))  # asked for: first
    for key, label in BREAKDOWN_SECTIONS:
        if key in results and results[key]["rows"]:
            if key.endswith(":feature") and [r["key"] for r in results[key]["rows"]] == [NONE_KEY]:
                continue
            parts.append(breakdown_section(results[key], label))
    if "cost_drivers" in results:
        parts.append(drivers_section(results["cost_drivers"]))
    notes = opportunity_notes(results)
    if notes:
        parts.append("### Findings\n\n" + "\n".join(f"- {n}" for n in notes))
    if plans is not None and plans["plans"]:
        parts.append(plans_section(plans))
    if ranked is not None and latency and latency["models"]:
        parts.append(latency_section(latency))
    notes_text = data_notes(overview, missing)
    if notes_text:
        parts.append(notes_text)
    return "\n\n".join(parts) + "\n"
