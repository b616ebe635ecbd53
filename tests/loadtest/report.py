"""summary.md: what a reader needs from results.json, with the issue's targets and every failure's cause."""

from __future__ import annotations

from typing import Any


def _v(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        value = f"{value:,.1f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value}{unit}"


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_v(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return lines


def _scenario(document: dict[str, Any], number: int) -> dict[str, Any] | None:
    return next((s for s in document["scenarios"] if s["number"] == number), None)


def _measured(s: dict[str, Any] | None) -> bool:
    return s is not None and s["status"] in ("ok", "failures")


def targets_section(document: dict[str, Any]) -> list[str]:
    """The issue's targets, each with the figure measured and whether it is met (reported, not asserted)."""
    rows: list[list[Any]] = []
    s1, s2, s3, s4 = (_scenario(document, n) for n in (1, 2, 3, 4))
    if _measured(s1):
        limit = s1["summary"]["target_ratio"]
        for r in s1["summary"]["rows"]:
            if r["target"] == "empty":
                continue
            verdict = "–" if r["meets_target"] is None else ("met" if r["meets_target"] else "**not met**")
            rows.append(
                [
                    f"{r['target']} cold start, K={r['k']} (spawn -> first success <= {limit}x floor)",
                    f"{_v(r['spawn_to_first_ok_ms'])} ms = {_v(r['ratio_to_floor'])}x",
                    verdict,
                ]
            )
    else:
        rows.append(["cold start <= 1.5x floor", "scenario 1 not run", "–"])
    for number, s in ((1, s1), (2, s2)):
        if _measured(s):
            failed = len(s["failures"])
            rows.append(
                [
                    f"scenario {number}: zero failed requests",
                    "0 failures" if not failed else f"{failed} failure cause(s), listed below",
                    "met" if not failed else "**not met**",
                ]
            )
    first = (s4 or {}).get("summary", {}).get("first_event") if _measured(s4) else None
    if first and first.get("status") == "ok":
        met = first["p50_ms"] is not None and first["p50_ms"] <= 100
        rows.append(
            [
                "first agent event on the WebSocket, warm stack (p50 <= 100 ms)",
                f"{_v(first['p50_ms'])} ms",
                "met" if met else "**not met**",
            ]
        )
    else:
        reason = (first or {}).get("reason") or "scenario 4 not run"
        rows.append(["first agent event on the WebSocket, warm stack (p50 <= 100 ms)", f"not available: {reason}", "–"])
    bridge = next((r for r in (s3 or {}).get("summary", {}).get("rows", []) if r["target"] == "ws-bridge"), None)
    if bridge:
        ok = bridge["failed"] == 0 and bridge["served"] == bridge["clients"]
        rows.append(
            [
                f"storm: {bridge['clients']} clients connected and served, no failure",
                f"{bridge['served']}/{bridge['clients']} served, {bridge['failed']} failed",
                "met" if ok else "**not met**",
            ]
        )
    else:
        reason = (s3 or {}).get("reason") or "scenario 3 not run"
        rows.append(["storm fully connected and served", f"not available: {reason}", "–"])
    return ["## Targets (issue 9; reported, not asserted)", "", *_table(["target", "measured", "verdict"], rows), ""]


def s1_section(s: dict[str, Any]) -> list[str]:
    summary = s["summary"]
    mix = "; ".join(f"{t}: {', '.join(m)}" for t, m in summary["mix"].items())
    rows = [
        [
            r["target"],
            r["k"],
            f"{r['instances'] - r['instances_failed']}/{r['instances']}",
            r["spawn_to_port_ms"],
            r["spawn_to_first_ok_ms"],
            r["spawn_to_first_ok_max_ms"],
            _v(r["ratio_to_floor"], "x"),
            r["burst_p50_ms"],
            r["burst_p95_ms"],
            r["burst_p99_ms"],
            f"{r['burst_failed']}/{r['burst_requests']}",
            r["burst_retried"],
            r.get("client_loop_lag_max_ms"),
        ]
        for r in summary["rows"]
    ]
    return [
        f"Burst of {summary['burst']} concurrent requests per instance the moment its port opens, "
        f"{summary['rounds']} round(s) per (service, K) ({summary.get('k1_rounds', summary['rounds'])} for K=1), "
        f"each service's batch right after the floor's. Mix: {mix}.",
        "",
        *_table(
            [
                "service",
                "K",
                "instances up",
                "spawn->port ms",
                "spawn->first success ms (median)",
                "max ms",
                "x floor",
                "burst p50 ms",
                "p95",
                "p99",
                "failed/requests",
                "retried (503)",
                "client stall max ms",
            ],
            rows,
        ),
        "",
        "The cold-start figure is spawn -> first success, timed from a thread of its own per instance. The burst "
        "latencies also carry the load generator's own stalls on the shared cores (last column: the longest "
        "pause of its event loop during the batch), so at K=8 they say more about the machine than about the "
        "service.",
    ]


def s2_section(s: dict[str, Any]) -> list[str]:
    summary = s["summary"]
    rows = [
        [
            r["target"],
            r["port_open_s"],
            r.get("ready_s"),
            r["first_ok_s"],
            r["first_ok_after_db_s"],
            r.get("requests"),
            r.get("failed"),
            r.get("answered_503_first"),
            r.get("p50_ms"),
            r.get("p99_ms"),
            r.get("max_ms"),
        ]
        for r in summary["rows"]
    ]
    marks = ", ".join(f"{m['name']} {m['t']:.2f}s" for m in s["raw"]["marks"])
    return [
        f"Everything started at t=0; the database {summary['db_delay_s']:g} s later (it accepted connections at "
        f"{_v(summary['db_up_s'])} s). {summary['workers_per_target']} client loops per service, each honouring "
        f"Retry-After, from the moment its port opened until {summary['settle_s']:g} s after the last first "
        "success. Times in seconds since t=0. A service's first success is bounded by the database, so the "
        "ratio to the floor is not a cold-start figure here; the time after the database came up is.",
        "",
        *_table(
            [
                "service",
                "port open s",
                "ready s",
                "first success s",
                "after DB up s",
                "requests",
                "failed",
                "503 then ok",
                "p50 ms",
                "p99 ms",
                "max ms",
            ],
            rows,
        ),
        "",
        f"Marks: {marks}.",
    ]


def s3_section(s: dict[str, Any]) -> list[str]:
    summary = s["summary"]
    rows = [
        [
            r["target"],
            f"{r['subscribed']}/{r['clients']}",
            r["served"],
            r["failed"],
            r["spawn_to_port_ms"],
            r["spawn_to_first_subscribed_ms"],
            r["spawn_to_all_subscribed_ms"],
            r["connect_p50_ms"],
            r["connect_p99_ms"],
            r["connect_max_ms"],
            r["first_event_p50_ms"],
            r["all_events_p50_ms"],
            r["all_events_p99_ms"],
        ]
        for r in summary["rows"]
    ]
    return [
        f"{summary['clients']} clients start connecting over {summary['window_s']:g} s from the moment the "
        "port opens; each subscribes, then the run starts and every client waits for its last event.",
        "",
        *_table(
            [
                "server",
                "subscribed",
                "served",
                "failed",
                "spawn->port ms",
                "spawn->first subscribed ms",
                "spawn->all subscribed ms",
                "connect p50 ms",
                "p99",
                "max",
                "first event p50 ms",
                "all events p50 ms",
                "p99",
            ],
            rows,
        ),
    ]


def s4_section(s: dict[str, Any]) -> list[str]:
    summary = s["summary"]
    rows = [
        [
            r["target"],
            r["throughput_rps"],
            r["p50_ms"],
            r["p95_ms"],
            r["p99_ms"],
            r["max_ms"],
            f"{r['failed']}/{r['requests']}",
        ]
        for r in summary["rows"]
    ]
    lines = [
        f"One warm instance per service, {summary['concurrency']} closed-loop clients, {summary['warmup_s']:g} s "
        f"warm-up then {summary['steady_s']:g} s measured.",
        "",
        *_table(["service", "req/s", "p50 ms", "p95", "p99", "max", "failed/requests"], rows),
        "",
    ]
    first = summary.get("first_event") or {}
    if first.get("status") == "ok":
        lines.append(
            f"Post a message -> first agent event on a subscribed WebSocket (warm stack, "
            f"{first['samples']} runs): p50 {_v(first['p50_ms'])} ms, p90 {_v(first.get('p90_ms'))} ms, "
            f"max {_v(first['max_ms'])} ms; last event p50 {_v(first.get('last_p50_ms'))} ms."
        )
    else:
        lines.append(f"Post -> first WebSocket event: not available: {first.get('reason', 'not measured')}.")
    return lines


def s5_section(s: dict[str, Any]) -> list[str]:
    lead = (
        [
            "Local stand-in (no deployed URLs given): each forced cold start is a fresh local instance; the "
            "figures test the code path, they are not Cloud Run's.",
            "",
        ]
        if s["summary"].get("local_stand_in")
        else []
    )
    rows = [
        [
            r["target"],
            r["url"],
            "yes" if r["forced_cold"] else "no",
            r["first_request_ms"],
            _v(r["ratio_to_floor"], "x"),
            r["burst"]["p50_ms"],
            r["burst"]["p99_ms"],
            r["warm"]["p50_ms"],
            r["warm"]["p99_ms"],
            r["burst"]["failed"] + r["warm"]["failed"],
        ]
        for r in s["summary"]["rows"]
    ]
    return lead + _table(
        [
            "service",
            "url",
            "forced cold",
            "first request ms",
            "x floor",
            "burst p50 ms",
            "p99",
            "warm p50 ms",
            "p99",
            "failed",
        ],
        rows,
    )


SECTIONS = {1: s1_section, 2: s2_section, 3: s3_section, 4: s4_section, 5: s5_section}
CHARTS = {1: ("s1_timeline_k", "cold_start_ratio"), 2: ("s2_cold_stack",), 3: ("s3_storm",), 4: ("cold_vs_warm",)}


def failures_lines(s: dict[str, Any]) -> list[str]:
    if not s["failures"]:
        return []
    rows = [
        [f["target"], f["request"], str(f.get("count", 1)), (f["cause"] or "?").replace("|", "/")[:400]]
        for f in s["failures"]
    ]
    return ["", "Failures (each with its cause):", "", *_table(["target", "request", "count", "cause"], rows)]


def _load(document: dict[str, Any]) -> str:
    load = document.get("load_average") or {}
    text = ""
    if load.get("start") and load.get("end"):
        text += (
            f" Load average (1/5/15 min) at the start {'/'.join(map(str, load['start']))}, at the end "
            f"{'/'.join(map(str, load['end']))}: with {document['machine']['cpus']} CPUs, anything above "
            f"{document['machine']['cpus']} is work waiting, ours or other people's."
        )
    if document.get("stack_env"):
        text += (
            " Local stack settings: "
            + ", ".join(f"{k}={v}" for k, v in document["stack_env"].items())
            + " (why: tests/loadtest/setup.py)."
        )
    return text


def markdown(document: dict[str, Any]) -> str:
    machine = document["machine"]
    lines = [
        "# Load test results: cold start",
        "",
        f"Run {document['generated_at']} at git {document['git']}, {machine['cpus']} CPUs, "
        f"{machine.get('memory_gb')} GB, Python {machine['python']}; took {document['duration_s']:.0f} s. "
        f"Command: `{document.get('command', 'python -m tests.loadtest')}`.{_load(document)}",
        "",
        'Every cold-start figure is compared with an empty function (functions-framework returning "ok"; '
        "for WebSockets a bare Starlette + uvicorn app) started the same way in the same run. The load "
        "generator shares the machine's CPUs with the instances it starts, so figures include that "
        "contention, as the floor does.",
        "",
    ]
    lines += targets_section(document)
    if document["unavailable"]:
        lines += ["## Not measured", ""]
        lines += [f"- {name}: not available: {reason}" for name, reason in document["unavailable"].items()]
        lines.append("")
    charts = document.get("charts", [])
    for s in document["scenarios"]:
        lines += [f"## Scenario {s['number']}: {s['title']}: {s['status']}", ""]
        if s["reason"]:
            lines += [f"{'Not available' if s['status'] == 'not available' else 'Reason'}: {s['reason']}", ""]
        if s["summary"].get("rows"):
            lines += SECTIONS[s["number"]](s)
        lines += failures_lines(s)
        for note in s["notes"]:
            lines += ["", f"Note: {note}" if "\n" not in note else f"```\n{note}\n```"]
        for chart in charts:
            if chart.startswith(CHARTS.get(s["number"], ())):
                lines += ["", f"![{chart}](charts/{chart})"]
        lines.append("")
    return "\n".join(lines)
