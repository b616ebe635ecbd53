"""The chat page end to end in headless Chromium: dev sign-in, upload a usage file, ask for an analysis, watch
the run's events arrive in order, read the final report with its figures and charts; then lose the bridge in
the middle of a run and see the page resume and finish with every event exactly once.

Expected figures: reference dataset A of tests/intelligence (datasets.py), priced by hand in
tests/intelligence/test_reference.py: the top recommendation (classify traffic from gpt-4o to gpt-5-nano)
saves 20 x (50,000 x 2.50 + 10 x 10.00) / 1e6 - 20 x (50,000 x 0.05 + 10 x 0.40) / 1e6 = 2.45192 over 2 days,
x 15 = $36.78 a month on its own, $31.26 in the savings plan; the plan of all ten takes the monthly bill from
$129.68 to $50.05 ($79.63 a month, not the $89.35 sum of the stand-alone figures). gpt-4o costs $5.20 of the
$8.65 total (60.2 %).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from functions.ws_bridge.delivery import REPLAY_UNAVAILABLE
from tests.web.conftest import WebStack, shot
from tests.web.pages import ask, last_run_id, run_rows, sign_in, token, upload_dataset_a

QUESTION = "How can we cut our LLM costs?"


def assert_matches_log(rows: list[dict[str, Any]], log: list[dict[str, Any]]) -> None:
    """Every event of the run's log, in seq order, each exactly once."""
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1)), [r["seq"] for r in rows]
    assert [(r["seq"], r["type"]) for r in rows] == [(e["seq"], e["type"]) for e in log]


def ask_through_relay(page: Any, web_stack: WebStack, tmp_path: Path, relay: Any) -> None:
    """Sign in, upload dataset A and ask, with the page's socket going through ``relay`` (Playwright's
    route_web_socket handler in front of the real bridge); returns once the run shows as completed."""
    page.route_web_socket(re.compile(r"/ws$"), relay)
    sign_in(page, web_stack.url)
    upload_dataset_a(page, tmp_path)
    ask(page, QUESTION)
    page.locator("article.run[data-status=completed]").wait_for(timeout=60_000)


def test_sign_in_upload_ask_and_read_the_report(web_stack: WebStack, page: Any, tmp_path: Path) -> None:
    page.goto(web_stack.url)
    page.get_by_role("heading", name="Sign in").wait_for()
    shot(page, "01-sign-in")
    page.emulate_media(color_scheme="dark")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "01-sign-in-phone-dark")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1280, "height": 900})
    email = sign_in(page, web_stack.url)
    assert page.locator("#connection-text").text_content() == "Connected"

    upload_dataset_a(page, tmp_path)
    assert page.locator("#upload-status").text_content() == "Uploaded usage.jsonl: 41 new rows."
    page.get_by_text("41 records, 2025-03-01 to 2025-03-02").wait_for()

    ask(page, QUESTION)
    page.locator("article.run li.event[data-type=tool_completed]").first.wait_for()
    shot(page, "02-run-in-progress")
    page.locator("article.run[data-status=completed]").wait_for(timeout=60_000)
    run_id = last_run_id(page)

    rows = run_rows(page, run_id)
    assert_matches_log(rows, web_stack.events(token(page), run_id))
    assert rows[0]["type"] == "agent_started" and rows[-1]["type"] == "agent_completed"
    started = [r["agent"] for r in rows if r["type"] == "agent_started"]
    assert started[0] == "supervisor" and started[-1] == "reporting"
    assert {"triage", "data", "optimization", "actions"} <= set(started)
    tools = [r["text"] for r in rows if r["type"] == "tool_completed"]
    assert any(t.startswith("rank_recommendations returned") for t in tools), tools
    assert any(r["type"] == "partial_result" for r in rows)

    report = page.locator("article.run .answer")
    assert report.get_by_role("heading", name="LLM cost report").is_visible()
    cells = report.locator("tr", has_text="Route classify traffic from gpt-4o to gpt-5-nano").locator("td")
    assert cells.all_text_contents()[:4] == [
        "1",
        "Route classify traffic from gpt-4o to gpt-5-nano",
        "$36.78",
        "$31.26",
    ]
    assert "from $129.68 to $50.05 (61.4% less)" in report.text_content()
    assert report.get_by_role("heading", name="The plan: $79.63 per month").is_visible()
    assert report.locator("script, img, iframe").count() == 0

    savings = page.locator("figure[data-chart=savings] li")
    assert savings.count() == 10
    assert savings.first.locator(".label").text_content() == "Route classify traffic from gpt-4o to gpt-5-nano"
    assert savings.first.locator(".value").text_content() == "$36.78/mo"
    # The chart shows each recommendation on its own (their sum, 89.35, is no total: the plan's 79.63 is).
    assert page.locator("figure[data-chart=savings] figcaption").text_content() == (
        "Monthly savings per recommendation, each on its own"
    )
    gpt4o = page.locator("figure[data-chart=cost] li[data-key='gpt-4o'] .value")
    assert gpt4o.text_content() == "$5.20 · 60.2%"
    assert page.locator("#threads button[aria-current=true]").text_content() == QUESTION
    assert page.errors == []  # type: ignore[attr-defined]

    page.evaluate("document.activeElement.blur()")  # no focus ring in the pictures
    shot(page, "03-report-light")
    page.set_viewport_size({"width": 1280, "height": 1280})
    shot(page, "chat-report")  # docs/images/chat-report.png in the README is a copy of this one
    page.set_viewport_size({"width": 1280, "height": 900})
    page.emulate_media(color_scheme="dark")
    shot(page, "04-report-dark")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "05-phone-dark-top")
    page.locator("figure[data-chart=savings]").scroll_into_view_if_needed()
    shot(page, "05-report-phone-dark")
    page.emulate_media(color_scheme="light")
    page.locator("article.run .answer table").first.scroll_into_view_if_needed()
    shot(page, "06-report-phone-light")
    # At phone width nothing but a table's own scroll box is wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390

    # A reload keeps the session (refresh token in this tab) and shows the thread's history with its chart.
    page.reload()
    page.get_by_text(email).wait_for()
    page.locator("#threads button", has_text=QUESTION).click()
    page.locator("article.run[data-status=completed] .answer h3").first.wait_for()
    assert page.locator("figure[data-chart=savings] li").count() == 10


def test_bridge_killed_mid_run_page_resumes_without_duplicates(web_stack: WebStack, page: Any, tmp_path: Path) -> None:
    """The bridge dies (SIGKILL) while a run streams; a new instance starts on the same address. The page shows
    that it lost the connection, reconnects with backoff, resubscribes with the last seq it showed, and ends
    with the whole run: every event of the log once, in order."""
    sign_in(page, web_stack.url)
    upload_dataset_a(page, tmp_path)
    ask(page, QUESTION)
    page.locator("article.run li.event[data-type=tool_completed]").first.wait_for()
    web_stack.kill_bridge()
    page.locator("#connection:not([data-state=connected])").wait_for()
    seen_before = run_rows(page)
    assert seen_before and seen_before[-1]["type"] != "agent_completed", "the run was still going"
    shot(page, "07-connection-lost")

    web_stack.start_bridge()
    page.locator("article.run[data-status=completed]").wait_for(timeout=60_000)
    assert page.locator("#connection-text").text_content() == "Connected (resumed)"
    run_id = last_run_id(page)
    rows = run_rows(page, run_id)
    assert len(rows) > len(seen_before), "events emitted during the outage were replayed"
    assert rows[: len(seen_before)] == seen_before
    assert_matches_log(rows, web_stack.events(token(page), run_id))
    assert page.locator("figure[data-chart=savings] li").first.locator(".value").text_content() == "$36.78/mo"
    shot(page, "08-resumed-and-completed")


def test_chat_sent_again_when_its_acceptance_was_lost(web_stack: WebStack, page: Any, tmp_path: Path) -> None:
    """The connection drops after the bridge took a chat but before the page saw `chat_accepted`. Reconnected,
    the page sends the same chat again (same client_message_id): one message, one run, every event once."""
    dropped: list[str] = []

    def relay(ws: Any) -> None:  # the real bridge behind; only this one frame is lost with its connection
        server = ws.connect_to_server()
        ws.on_message(server.send)

        def from_server(message: str | bytes) -> None:
            if not dropped and isinstance(message, str) and '"chat_accepted"' in message:
                dropped.append(message)
                ws.close(code=4000, reason="connection lost")
                server.close()
                return
            ws.send(message)

        server.on_message(from_server)

    ask_through_relay(page, web_stack, tmp_path, relay)
    assert dropped and page.locator("#connection-text").text_content() == "Connected (resumed)"
    assert page.locator("article.run").count() == 1 and page.locator(".message.user").count() == 1
    run_id = last_run_id(page)
    assert run_id == json.loads(dropped[0])["run_id"]
    assert_matches_log(run_rows(page, run_id), web_stack.events(token(page), run_id))
    with web_stack.api.stack.client(token(page)) as client:
        thread_id = client.get(f"/api/runs/{run_id}").json()["thread_id"]
        roles = [m["role"] for m in client.get(f"/api/threads/{thread_id}/messages").json()["items"]]
    assert roles == ["user", "assistant"]


def test_replay_refused_page_catches_up_and_follows_the_run_again(
    web_stack: WebStack, page: Any, tmp_path: Path
) -> None:
    """Scenario 15: the connection drops mid-run and the fresh bridge cannot read the event log for the resume
    (as when its Firestore import failed during its start, tests/ws_bridge/test_replay_first_import.py): it
    answers the subscribe with `replay_unavailable` and does not follow the thread. The page catches up through
    the agent API, then subscribes again and ends with the whole run, every event once."""
    refused: list[str] = []
    state = {"dropped": False}

    def relay(ws: Any) -> None:  # the real bridge behind, except one connection drop and one subscribe's answer
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            if state["dropped"] and not refused and isinstance(message, str) and '"subscribe"' in message:
                refused.append(message)
                ws.send(json.dumps(REPLAY_UNAVAILABLE.error))  # what the bridge answers then
                return
            server.send(message)

        def from_server(message: str | bytes) -> None:
            ws.send(message)
            if not state["dropped"] and isinstance(message, str) and '"tool_completed"' in message:
                state["dropped"] = True
                ws.close(code=4000, reason="connection lost")
                server.close()

        ws.on_message(from_page)
        server.on_message(from_server)

    ask_through_relay(page, web_stack, tmp_path, relay)
    assert refused, "the page never subscribed again after the drop"
    run_id = last_run_id(page)
    assert_matches_log(run_rows(page, run_id), web_stack.events(token(page), run_id))


def test_plan_refusal_is_shown_in_words(web_stack: WebStack, page: Any) -> None:
    """A chat over the user's plan (here the early plan's default 50 USD monthly cap, reached in the cost ledger)
    is refused by the agent API through the bridge; the page says so in words, without the machine code."""
    import subprocess
    import sys

    from tests.agent.conftest import Sql

    email = sign_in(page, web_stack.url)
    db_url = web_stack.api.stack.db_url
    env = {"NETRA_ENV": "test", "NETRA_DOTENV": "/nonexistent/.env", "DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "functions.auth.admin", "set-plan", email, "early"]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=60)
    sql = Sql(db_url)
    try:
        sql.one(
            "INSERT INTO cost_ledger (user_id, provider, model, cost_usd) "
            "SELECT id, 'mock', 'mock-pro', 60 FROM users WHERE email = %s RETURNING id",
            (email,),
        )
    finally:
        sql.close()
    ask(page, QUESTION)
    error = page.locator("#chat-error[data-code=monthly_spend_cap]")
    error.wait_for(timeout=30_000)
    text = error.text_content() or ""
    assert text.startswith("your plan's LLM spend of 50.00 USD this month is used up (60.00 USD)"), text
    assert "monthly_spend_cap" not in text
    assert page.locator("#send").is_enabled(), "the page lets the user go on after the refusal"
    shot(page, "plan-refusal")
