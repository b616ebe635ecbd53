"""PNG charts from results.json: each answers one question at a glance.

- s1_timeline_k{K}.png: when did each fresh instance open its port and first succeed, and when did its burst
  finish (the floor's instances on the same axis)?
- cold_start_ratio.png: spawn -> first success per service and K, as a multiple of the empty function.
- cold_vs_warm.png: burst latency on fresh instances (smallest K) against the same requests on a warm one.
- s2_cold_stack.png: latency over time while the stack starts, with the start marks.
- s3_storm.png: how long each WebSocket client took to connect and to receive its events.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend is chosen before pyplot is imported
from matplotlib.lines import Line2D  # noqa: E402

COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
FLOOR_COLOR = "#9e9e9e"


def _scenario(document: dict[str, Any], number: int) -> dict[str, Any] | None:
    """A scenario with figures; "not available" ones may still hold the floor's (the storm does)."""
    for s in document["scenarios"]:
        if s["number"] == number and s["status"] != "error" and s["summary"].get("rows"):
            return s
    return None


def _save(fig: Any, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path.name


def _colors(names: list[str]) -> dict[str, str]:
    palette = iter(COLORS)
    return {n: FLOOR_COLOR if n in ("empty", "empty-ws") else next(palette, "#333333") for n in names}


def s1_timeline(s1: dict[str, Any], k: int, out: Path) -> str | None:
    """One row per instance: spawn -> port open (thin), port -> first success (thick), dots at each answer."""
    batches = [b for b in s1["raw"]["batches"] if b["k"] == k and b["round"] == 0]
    if not batches:
        return None
    colors = _colors([b["target"] for b in batches])
    rows = len(batches) * k
    fig, ax = plt.subplots(figsize=(11, max(3.0, 0.32 * rows + 1.6)))
    y = 0
    ticks, labels = [], []
    rng = random.Random(1)
    for batch in reversed(batches):
        color = colors[batch["target"]]
        for inst in reversed(batch["instances"]):
            spawn, port, first = inst["t_spawn"], inst["t_port"], inst["t_first_ok"]
            if port is not None:
                ax.plot([spawn, port], [y, y], color=color, lw=2, alpha=0.5, solid_capstyle="butt")
            if port is not None and first is not None:
                ax.plot([port, first], [y, y], color=color, lw=7, solid_capstyle="butt")
            if inst["error"]:
                ax.plot([spawn], [y], marker="x", color="red", ms=9)
            done = [
                (s["t_send"] + s["latency_ms"] / 1000, s["ok"])
                for s in batch["samples"]
                if s["instance"] == inst["index"]
            ]
            ax.scatter(
                [d[0] for d in done],
                [y + rng.uniform(-0.25, 0.25) for _ in done],
                s=6,
                c=[color if ok else "red" for _, ok in done],
                alpha=0.6,
                zorder=3,
            )
            ticks.append(y)
            labels.append(f"{batch['target']} #{inst['index']}")
            y += 1
        y += 0.6
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set_xlabel("seconds since the instances were spawned")
    ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"Scenario 1, scale from zero, K={k}: each row is a fresh instance", loc="left")
    legend = [
        Line2D([], [], color="k", lw=2, alpha=0.5, label="spawn -> port open"),
        Line2D([], [], color="k", lw=7, label="port open -> first success"),
        Line2D([], [], color="k", marker="o", lw=0, ms=4, label="a burst request answered"),
        Line2D([], [], color="red", marker="o", lw=0, ms=4, label="failed request"),
    ]
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return _save(fig, out / f"s1_timeline_k{k}.png")


def cold_start_ratio(s1: dict[str, Any], out: Path) -> str | None:
    rows = [r for r in s1["summary"]["rows"] if r["spawn_to_first_ok_ms"] is not None]
    if not rows:
        return None
    ks = sorted({r["k"] for r in rows})
    targets = list(dict.fromkeys(r["target"] for r in rows))
    colors = _colors(targets)
    width = 0.8 / len(targets)
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(ks) + 2), 4.5))
    limit = s1["summary"]["target_ratio"]
    for ki, k in enumerate(ks):
        floor = next((r["spawn_to_first_ok_ms"] for r in rows if r["k"] == k and r["ratio_to_floor"] == 1.0), None)
        if floor:
            ax.plot([ki - 0.45, ki + 0.45], [floor * limit] * 2, ls="--", color="red", lw=1)
        for ti, target in enumerate(targets):
            row = next((r for r in rows if r["k"] == k and r["target"] == target), None)
            if row is None:
                continue
            x = ki - 0.4 + width * (ti + 0.5)
            ax.bar(x, row["spawn_to_first_ok_ms"], width * 0.9, color=colors[target], label=target if ki == 0 else None)
            if row["ratio_to_floor"] is not None:
                ax.text(
                    x,
                    row["spawn_to_first_ok_ms"],
                    f"{row['ratio_to_floor']:.1f}x",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
    ax.set_xticks(range(len(ks)), [f"K={k}" for k in ks])
    ax.set_ylabel("spawn -> first success, median (ms)")
    ax.set_title(
        f"Cold start as a multiple of the empty function (red dashes: {limit}x target)", loc="left", fontsize=10
    )
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out / "cold_start_ratio.png")


def cold_vs_warm(s1: dict[str, Any] | None, s4: dict[str, Any] | None, out: Path) -> str | None:
    if s1 is None or s4 is None:
        return None
    # The smallest K: with 8 instances bursting at once the load generator's own stalls on the shared cores
    # dominate the burst percentiles (see client_loop_lag_max_ms), which is not what this chart is about.
    kmin = min(r["k"] for r in s1["summary"]["rows"])
    cold = {r["target"]: r for r in s1["summary"]["rows"] if r["k"] == kmin}
    warm = {r["target"]: r for r in s4["summary"]["rows"]}
    targets = [t for t in cold if t in warm and cold[t]["burst_p50_ms"] is not None]
    if not targets:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 1.9 * len(targets) + 2), 4.5))
    series = [
        ("cold p50", cold, "burst_p50_ms", "#c44e52", 1.0),
        ("cold p95", cold, "burst_p95_ms", "#c44e52", 0.5),
        ("warm p50", warm, "p50_ms", "#4c72b0", 1.0),
        ("warm p95", warm, "p95_ms", "#4c72b0", 0.5),
    ]
    width = 0.2
    for si, (label, source, key, color, alpha) in enumerate(series):
        xs = [i - 0.3 + width * si for i in range(len(targets))]
        values = [source[t][key] or 0 for t in targets]
        ax.bar(xs, values, width * 0.92, color=color, alpha=alpha, label=label)
        for x, v in zip(xs, values, strict=True):
            ax.text(x, v, f"{v:.0f}", ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_xticks(range(len(targets)), targets)
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title(
        f"Cold (burst of {s1['summary']['burst']} on {kmin} fresh instance(s) the moment its port opens) "
        "vs warm (steady load) latency",
        loc="left",
        fontsize=10,
    )
    ax.set_ylim(top=ax.get_ylim()[1] * 4)  # room for the legend above the tallest bar
    ax.legend(fontsize=8, ncols=4, loc="upper center")
    ax.grid(axis="y", alpha=0.3, which="both")
    return _save(fig, out / "cold_vs_warm.png")


def s2_timeline(s2: dict[str, Any], out: Path) -> str | None:
    samples = s2["raw"]["samples"]
    if not samples:
        return None
    targets = list(dict.fromkeys(s["target"] for s in samples))
    colors = _colors(targets)
    fig, ax = plt.subplots(figsize=(11, 5))
    for target in targets:
        mine = [s for s in samples if s["target"] == target and s["ok"]]
        ax.scatter(
            [s["t_send"] for s in mine],
            [max(s["latency_ms"], 0.1) for s in mine],
            s=5,
            alpha=0.45,
            color=colors[target],
            label=target,
        )
    retried = [s for s in samples if s["ok"] and s["attempts"] > 1]
    if retried:
        ax.scatter(
            [s["t_send"] for s in retried],
            [s["latency_ms"] for s in retried],
            s=22,
            facecolors="none",
            edgecolors="k",
            label="answered after 503 + Retry-After",
        )
    failed = [s for s in samples if not s["ok"]]
    if failed:
        ax.scatter(
            [s["t_send"] for s in failed],
            [max(s["latency_ms"], 0.1) for s in failed],
            s=30,
            marker="x",
            color="red",
            label="failed",
        )
    ax.set_yscale("log")
    top = ax.get_ylim()[1]
    for group in _group_marks(s2["raw"]["marks"], ax.get_xlim()):
        is_db = any(m["name"].startswith("database") for m in group)
        for mark in group:
            db_mark = mark["name"].startswith("database")
            ax.axvline(
                mark["t"], color="red" if db_mark else "#555555", lw=1.2 if db_mark else 0.7, ls="-" if db_mark else ":"
            )
        label = ", ".join(m["name"] for m in group)
        ax.text(
            group[0]["t"],
            top,
            " " + label,
            rotation=90,
            va="top",
            ha="right",
            fontsize=7,
            color="red" if is_db else "#333333",
        )
    ax.set_xlabel("seconds since everything started (request send time)")
    ax.set_ylabel("latency until the final answer (ms, log)")
    ax.set_title(f"Scenario 2, cold stack: database {s2['summary']['db_delay_s']:g}s late", loc="left")
    ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    ax.grid(alpha=0.3)
    return _save(fig, out / "s2_cold_stack.png")


def _group_marks(marks: list[dict[str, Any]], xlim: tuple[float, float]) -> list[list[dict[str, Any]]]:
    """Marks closer than 2% of the axis share one label, so their names do not print over each other."""
    gap = 0.02 * (xlim[1] - xlim[0])
    groups: list[list[dict[str, Any]]] = []
    for mark in sorted(marks, key=lambda m: m["t"]):
        if groups and mark["t"] - groups[-1][-1]["t"] < gap:
            groups[-1].append(mark)
        else:
            groups.append([mark])
    return groups


def s3_storm(s3: dict[str, Any], out: Path) -> str | None:
    runs = s3["raw"].get("runs", [])
    if not runs:
        return None
    colors = _colors([r["target"] for r in runs])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for run in runs:
        clients = run["clients"]
        connect = sorted(c["connect_ms"] for c in clients if c["connect_ms"] is not None)
        events = sorted(c["events_ms"] for c in clients if c["events_ms"] is not None)
        for ax, values in ((axes[0], connect), (axes[1], events)):
            if values:
                ax.plot(
                    values,
                    [100 * (i + 1) / len(clients) for i in range(len(values))],
                    color=colors[run["target"]],
                    lw=2,
                    label=f"{run['target']} ({len(values)}/{len(clients)})",
                )
    axes[0].set_title("Scenario 3: connect + subscribe (ms)", loc="left", fontsize=10)
    axes[1].set_title("Scenario 3: all events received, from the run's start (ms)", loc="left", fontsize=10)
    for ax in axes:
        ax.set_ylabel("% of clients done")
        ax.set_ylim(0, 101)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    return _save(fig, out / "s3_storm.png")


def draw_all(document: dict[str, Any], out: Path) -> list[str]:
    """Every chart the results allow; a chart that cannot be drawn is skipped, never faked."""
    s1, s2, s3, s4 = (_scenario(document, n) for n in (1, 2, 3, 4))
    made: list[str | None] = []
    if s1:
        made += [s1_timeline(s1, k, out) for k in sorted({b["k"] for b in s1["raw"]["batches"]})]
        made.append(cold_start_ratio(s1, out))
    made.append(cold_vs_warm(s1, s4, out))
    if s2:
        made.append(s2_timeline(s2, out))
    if s3:
        made.append(s3_storm(s3, out))
    return [m for m in made if m]
