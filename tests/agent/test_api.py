"""The agent REST API on the local stack: real auth tokens (dev login), the API and the worker as
functions-framework processes, PostgreSQL, the Pub/Sub emulator (push to the worker) and the Firestore emulator.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import httpx

from shared.models.events import AgentEvent
from tests.agent.conftest import ApiEnv
from tests.agent.harness import assert_gapless, wait_until


def _post(client: httpx.Client, content: str = "What does my GPT-4o traffic cost?", **extra: Any) -> dict[str, Any]:
    response = client.post("/api/agent/message", json={"content": content, **extra})
    assert response.status_code == 202, response.text
    return response.json()


def _all_events(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        body = client.get(f"/api/runs/{run_id}/events", params={"after_seq": after, "limit": 5}).json()
        if not body["events"]:
            return events
        events += body["events"]
        after = body["next_after_seq"]


def test_end_to_end_chat_turn(api: ApiEnv) -> None:
    """Dev login, post a message, read the run's events from Firestore (API) and from agent-events: they match,
    in order, gapless, ending in agent_completed; the thread holds the answer; the run has usage and cost."""
    stack = api.stack
    token = api.login()
    with stack.client(token) as client:
        posted = _post(client)
        assert posted["status"] == "queued" and {"run_id", "thread_id", "message_id"} <= posted.keys()
        run_id = posted["run_id"]
        tapped = stack.wait_tapped_terminal(run_id)
        run = stack.wait_run(token, run_id)
        logged = _all_events(client, run_id)
        assert [(e["seq"], e["type"]) for e in logged] == [(e.seq, e.type) for e in tapped]
        assert_gapless([AgentEvent.model_validate(e) for e in logged])
        assert logged[-1]["type"] == "agent_completed" and logged[0]["type"] == "agent_started"
        assert all(e.data["_attributes"]["user_id"] == api.user_id(token) for e in tapped)

        assert run["status"] == "completed" and run["error"] is None and run["last_seq"] == logged[-1]["seq"]
        assert run["usage"]["output_tokens"] > 0 and run["cost_usd"] > 0
        assert run["queue_ms"] is not None and run["duration_ms"] is not None
        messages = client.get(f"/api/threads/{posted['thread_id']}/messages").json()["items"]
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert messages[1]["id"] == run["answer_message_id"] == logged[-1]["data"]["message_id"]
        assert messages[1]["content"] == logged[-1]["data"]["content"] and messages[1]["run_id"] == run_id
        thread = client.get(f"/api/threads/{posted['thread_id']}").json()
        assert thread["title"].startswith("What does my GPT-4o")

        # A follow-up in the same thread sees the history and gets its own run.
        second = _post(client, "And what about caching?", thread_id=posted["thread_id"])
        assert second["thread_id"] == posted["thread_id"] and second["run_id"] != run_id
        assert stack.wait_run(token, second["run_id"])["status"] == "completed"
        assert len(client.get(f"/api/threads/{posted['thread_id']}/messages").json()["items"]) == 4


def test_threads_crud_and_cursor_pagination(api: ApiEnv) -> None:
    token = api.login()
    with api.stack.client(token) as client:
        created = [client.post("/api/threads", json={"title": f"t{i}", "metadata": {"i": i}}) for i in range(5)]
        assert all(r.status_code == 201 for r in created)
        ids = [r.json()["id"] for r in created]
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            body = client.get("/api/threads", params=params).json()
            seen += [t["id"] for t in body["items"]]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == list(reversed(ids)) and pages == 3  # newest activity first, each exactly once

        patched = client.patch(f"/api/threads/{ids[0]}", json={"title": "renamed"})
        assert patched.status_code == 200 and patched.json()["title"] == "renamed"
        assert patched.json()["metadata"] == {"i": 0}
        assert client.get("/api/threads", params={"limit": 1}).json()["items"][0]["id"] == ids[0]
        assert client.patch(f"/api/threads/{ids[0]}", json={}).status_code == 422
        assert client.delete(f"/api/threads/{ids[1]}").status_code == 204
        assert client.get(f"/api/threads/{ids[1]}").status_code == 404
        assert client.delete(f"/api/threads/{ids[1]}").status_code == 404

        # Messages page oldest first.
        thread_id = ids[2]
        runs = [_post(client, f"question {i}", thread_id=thread_id)["run_id"] for i in range(2)]
        for run_id in runs:
            api.stack.wait_run(token, run_id)
        first = client.get(f"/api/threads/{thread_id}/messages", params={"limit": 3}).json()
        rest = client.get(
            f"/api/threads/{thread_id}/messages", params={"limit": 3, "cursor": first["next_cursor"]}
        ).json()
        contents = [m["content"] for m in first["items"] + rest["items"]]
        assert len(contents) == 4 and rest["next_cursor"] is None
        assert contents[0] == "question 0" and "question 1" in contents


def test_client_message_id_is_idempotent(
    api: ApiEnv,
) -> None:
    token = api.login()
    key = f"cm-{uuid.uuid4().hex}"
    with api.stack.client(token) as client:
        first = _post(client, "hello", client_message_id=key)
        again = client.post("/api/agent/message", json={"content": "hello", "client_message_id": key})
        assert again.status_code == 202 and again.headers["Idempotent-Replay"] == "true"
        assert {k: again.json()[k] for k in ("run_id", "thread_id", "message_id")} == {
            k: first[k] for k in ("run_id", "thread_id", "message_id")
        }
        conflict = client.post("/api/agent/message", json={"content": "other", "client_message_id": key})
        assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "client_message_id_conflict"

        # Concurrent duplicates: one message, one run.
        racing = f"cm-{uuid.uuid4().hex}"
        results: list[dict[str, Any]] = []

        def send() -> None:
            with api.stack.client(token) as c:
                results.append(_post(c, "race", client_message_id=racing))

        threads = [threading.Thread(target=send) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({r["run_id"] for r in results}) == 1 and len(results) == 6
        api.stack.wait_run(token, results[0]["run_id"])
        threads_of_user = client.get("/api/threads", params={"limit": 100}).json()["items"]
        assert len(threads_of_user) == 2  # one per distinct client_message_id, none left over by the losers


def test_bad_input_is_a_clear_error(api: ApiEnv) -> None:
    token = api.login()
    with api.stack.client(token) as client:
        blank = client.post("/api/agent/message", json={"content": "   "})
        assert blank.status_code == 422 and blank.json()["error"]["details"][0]["field"] == "content"
        unknown = client.post("/api/agent/message", json={"content": "x", "colour": "red"})
        assert unknown.status_code == 422
        bad_json = client.post("/api/threads", content=b"{not json", headers={"Content-Type": "application/json"})
        assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
        cursor = client.get("/api/threads", params={"cursor": "bogus"})
        assert cursor.status_code == 400 and cursor.json()["error"]["code"] == "invalid_cursor"
        assert client.get("/api/threads", params={"limit": 0}).status_code == 422
        assert client.get("/api/costs", params={"group_by": "colour"}).status_code == 422
        backwards = client.get("/api/costs", params={"from": "2026-02-01", "to": "2026-01-01"})
        assert backwards.status_code == 422 and "before" in backwards.json()["error"]["message"]
        missing = client.post("/api/agent/message", json={"content": "x", "thread_id": str(uuid.uuid4())})
        assert missing.status_code == 404
        too_big = client.post("/api/agent/message", json={"content": "x" * 40_000})
        assert too_big.status_code == 422
        assert client.get("/api/runs/not-a-uuid").status_code == 404
        assert client.post("/api/nowhere").status_code == 404


def test_every_route_hides_other_users_data_and_needs_a_token(api: ApiEnv) -> None:
    """Authorization: another user's ids answer 404 on every route; a missing or bad token answers 401."""
    owner, intruder = api.login(), api.login()
    with api.stack.client(owner) as client:
        posted = _post(client)
        api.stack.wait_run(owner, posted["run_id"])
    thread, run = posted["thread_id"], posted["run_id"]
    foreign = [
        ("GET", f"/api/threads/{thread}", None),
        ("PATCH", f"/api/threads/{thread}", {"title": "mine now"}),
        ("DELETE", f"/api/threads/{thread}", None),
        ("GET", f"/api/threads/{thread}/messages", None),
        ("POST", "/api/agent/message", {"content": "hi", "thread_id": thread}),
        ("GET", f"/api/runs/{run}", None),
        ("POST", f"/api/runs/{run}/cancel", None),
        ("GET", f"/api/runs/{run}/events", None),
    ]
    with api.stack.client(intruder) as client:
        for method, path, body in foreign:
            response = client.request(method, path, json=body)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"]["code"] == "not_found"
        # Lists and costs only ever show the caller's own rows.
        assert client.get("/api/threads").json()["items"] == []
        assert client.get("/api/costs").json()["groups"] == []
    with api.stack.client(owner) as client:
        assert client.get(f"/api/threads/{thread}").json()["title"] != "mine now"
        assert client.get(f"/api/runs/{run}").status_code == 200

    every_route = foreign + [("POST", "/api/threads", {}), ("GET", "/api/threads", None), ("GET", "/api/costs", None)]
    forged = owner[:-4] + ("AAAA" if not owner.endswith("AAAA") else "BBBB")
    for token in (None, "not-a-jwt", forged):
        with api.stack.client(token) as client:
            for method, path, body in every_route:
                response = client.request(method, path, json=body)
                assert response.status_code == 401, (token, method, path, response.text)
                assert response.headers["WWW-Authenticate"] == "Bearer"
                assert response.json()["error"]["code"].startswith(("unauthorized", "token_"))


def test_cancel_mid_run_through_the_api(api: ApiEnv) -> None:
    token = api.login()
    with api.stack.client(token) as client:
        posted = _post(client, "a long question " * 20)
        wait_until(
            lambda: len(client.get(f"/api/runs/{posted['run_id']}/events").json()["events"]) >= 3,
            30,
            "the run under way",
        )
        cancel = client.post(f"/api/runs/{posted['run_id']}/cancel")
        assert cancel.status_code in (200, 202), cancel.text
        run = api.stack.wait_run(token, posted["run_id"])
        assert run["status"] == "cancelled" and run["answer_message_id"] is None
        events = _all_events(client, posted["run_id"])
        assert events[-1]["type"] == "run_cancelled"
        assert_gapless([AgentEvent.model_validate(e) for e in events])
        again = client.post(f"/api/runs/{posted['run_id']}/cancel")
        assert again.status_code == 200 and again.json()["status"] == "cancelled"
        done = _post(client, "short")
        api.stack.wait_run(token, done["run_id"])
        finished = client.post(f"/api/runs/{done['run_id']}/cancel")
        assert finished.status_code == 409 and finished.json()["error"]["code"] == "run_finished"


def test_costs_report_groups_the_ledger(api: ApiEnv) -> None:
    token = api.login()
    with api.stack.client(token) as client:
        runs = [_post(client, f"cost question {i}")["run_id"] for i in range(2)]
        total = sum(api.stack.wait_run(token, r)["cost_usd"] for r in runs)
        by_model = client.get("/api/costs").json()
        assert by_model["group_by"] == "model" and by_model["currency"] == "USD"
        assert {g["key"] for g in by_model["groups"]} == {"mock:mock-pro"}
        assert by_model["totals"]["calls"] == 4  # two LLM calls per run
        assert abs(by_model["totals"]["cost_usd"] - total) < 1e-8 and total > 0
        by_thread = client.get("/api/costs", params={"group_by": "thread"}).json()
        assert len(by_thread["groups"]) == 2 and all(g["runs"] == 1 for g in by_thread["groups"])
        by_day = client.get("/api/costs", params={"group_by": "day"}).json()
        assert len(by_day["groups"]) == 1 and by_day["groups"][0]["calls"] == 4
        past = client.get("/api/costs", params={"from": "2020-01-01", "to": "2020-02-01"}).json()
        assert past["groups"] == [] and past["totals"]["cost_usd"] == 0


def test_ingest_key_writes_usage_and_opens_nothing_else(api: ApiEnv) -> None:
    """Issue 19 on the real agent API process: a key created with an access token ingests OTLP spans for its
    user, and the key itself opens no thread, run or report route (it is not an access token)."""
    from tests.ingest.otlp_payloads import chat_attrs, request, span

    stack = api.stack
    token = api.login()
    with stack.client(token) as client:
        thread = client.post("/api/threads", json={}).json()
        created = client.post("/api/ingest/keys", json={"name": "collector"})
        assert created.status_code == 201, created.text
        key = created.json()["key"]
    with stack.client(key) as as_key:
        for path in ("/api/threads", f"/api/threads/{thread['id']}", "/api/usage/summary", "/api/ingest/keys"):
            assert as_key.get(path).status_code == 401, path
        assert as_key.post("/api/agent/message", json={"content": "hi"}).status_code == 401
        sent = as_key.post(
            "/v1/traces",
            content=request([span(chat_attrs())]).SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert sent.status_code == 200, sent.text
    with stack.client(token) as client:
        assert client.get("/api/usage/summary").json()["records"] == 1
        status = client.get("/api/ingest/status").json()
        assert status["keys"][0]["last_used_at"] is not None

    # The batches ask for a rollup refresh (usage-rollups, pushed to the worker): the user's analyses are
    # precomputed at the latest version without the hourly job. The first batch may come before the API's
    # deferred Pub/Sub client is up, so batches are sent until one asks.
    from functions.agent.intelligence.toolbox import FULL_ANALYSIS
    from tests.agent.conftest import Sql

    sql = Sql(stack.db_url)
    user_id = api.user_id(token)

    def refreshed() -> bool:
        with stack.client(key) as as_key:
            as_key.post(
                "/v1/traces",
                content=request([span(chat_attrs())]).SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"},
            )
        rows = sql.all("SELECT count(*) AS n FROM usage_rollups WHERE user_id = %s", (user_id,))
        return rows[0]["n"] == len(FULL_ANALYSIS)

    try:
        wait_until(refreshed, 60, "rollups refreshed by the worker", interval_s=1.0)
    finally:
        sql.close()


def test_bad_input_is_a_4xx_with_a_code_never_a_500(api: ApiEnv) -> None:
    """Issue 15, finding 5: inputs that reached PostgreSQL or the parser and came back as 500s. Each is now a
    4xx with a stable code, and nothing was stored for it."""
    token = api.login()
    with api.stack.client(token) as client:
        thread_id = client.post("/api/threads", json={"title": "kept"}).json()["id"]
        json_headers = {"Content-Type": "application/json"}
        cases: list[tuple[str, str, Any, int, str]] = [
            # NUL characters and unpaired surrogates: SQLSTATE 22P05 / 22021 / 22P02 before.
            ("POST", "/api/threads", '{"title": "a\\u0000b"}', 422, "validation_error"),
            ("POST", "/api/threads", '{"metadata": {"k": "\\u0000"}}', 422, "validation_error"),
            ("POST", "/api/threads", '{"metadata": {"\\u0000": 1}}', 422, "validation_error"),
            ("POST", "/api/threads", '{"title": "\\udc00"}', 422, "validation_error"),
            ("PATCH", f"/api/threads/{thread_id}", '{"title": "a\\u0000b"}', 422, "validation_error"),
            ("PATCH", f"/api/threads/{thread_id}", '{"metadata": {"k": "\\ud800x"}}', 422, "validation_error"),
            ("POST", "/api/agent/message", '{"content": "a\\u0000b"}', 422, "validation_error"),
            # Nesting past the cap: a RecursionError before.
            ("POST", "/api/agent/message", "[" * 100_000, 400, "json_too_deep"),
            ("POST", "/api/threads", '{"metadata": ' + '{"a": ' * 40 + "1" + "}" * 41, 400, "json_too_deep"),
            # null is not a value (the documents say string / uuid); unknown media types are refused.
            ("POST", "/api/agent/message", '{"content": "hi", "thread_id": null}', 422, "validation_error"),
        ]
        for method, path, body, status, code in cases:
            response = client.request(method, path, content=body, headers=json_headers)
            assert response.status_code == status, (path, body[:60], response.text)
            assert response.json()["error"]["code"] == code, (path, body[:60], response.text)
        not_json = client.post("/api/threads", content=b"{}", headers={"Content-Type": "text/csv"})
        assert not_json.status_code == 415 and not_json.json()["error"]["code"] == "unsupported_media_type"
        # A sequence number past bigint: SQLSTATE 22003 before.
        run_id = _post(client)["run_id"]
        huge = client.get(f"/api/runs/{run_id}/events", params={"after_seq": 10**30})
        assert huge.status_code == 422 and huge.json()["error"]["code"] == "validation_error"
        # ?cursor= is the first page (it was refused while POST with no body was accepted).
        first = client.get("/api/threads", params={"cursor": ""})
        assert first.status_code == 200 and first.json()["items"]
        assert client.get(f"/api/threads/{thread_id}").json()["title"] == "kept", "nothing was changed"
        # Health routes answer 405 to methods they do not serve (404 before).
        health = client.post("/health/ready")
        assert health.status_code == 405 and health.headers["Allow"] == "GET"


def test_usage_inputs_that_were_500s_are_4xx(api: ApiEnv) -> None:
    """Issue 15, finding 5, on POST /api/usage: a CSV field over the csv module's 128 KiB limit (csv.Error), a
    LiteLLM row with "inf" tokens (OverflowError), a non-object usage_object or prompt_tokens_details
    (AttributeError), nesting past the cap (RecursionError), a NUL in a text field: each answers a 4xx that names
    the problem, and nothing is stored."""
    token = api.login()
    litellm = {"request_id": "r1", "startTime": "2025-11-03T14:05:00Z", "model": "gpt-4o", "completion_tokens": 1}
    rows = [
        {**litellm, "prompt_tokens": "inf"},
        {**litellm, "prompt_tokens": 5, "metadata": {"usage_object": [1, 2]}},
        {**litellm, "prompt_tokens": 5, "metadata": {"usage_object": {"prompt_tokens_details": "x"}}},
    ]
    netra = {"request_id": "n1", "timestamp": "2025-11-03T14:05:00Z", "model": "gpt-4o", "input_tokens": 1}
    with api.stack.client(token) as client:

        def upload(body: str | bytes, content_type: str, fmt: str = "auto") -> httpx.Response:
            return client.post(
                "/api/usage", params={"format": fmt}, content=body, headers={"Content-Type": content_type}
            )

        big_field = "request_id,timestamp,model,input_tokens,output_tokens\n" + "x" * 140_000 + ",2025,m,1,1\n"
        csv_answer = upload(big_field, "text/csv")
        assert csv_answer.status_code == 400 and csv_answer.json()["error"]["code"] == "invalid_csv", csv_answer.text
        for row in rows:
            answer = upload(json.dumps(row) + "\n", "application/x-ndjson", "litellm")
            assert answer.status_code == 422, (row, answer.text)
            assert answer.json()["error"]["code"] == "invalid_rows"
        deep = upload("[" * 100_000, "application/json")
        assert deep.status_code == 400 and deep.json()["error"]["code"] == "json_too_deep"
        deep_line = upload('{"a":' * 50 + "1" + "}" * 50 + "\n", "application/x-ndjson")
        assert deep_line.status_code == 422 and "nests deeper" in deep_line.text
        nul = upload(json.dumps({**netra, "output_tokens": 1, "feature": "a\u0000b"}) + "\n", "application/x-ndjson")
        assert nul.status_code == 422 and "NUL" in nul.text
        header_only = upload("request_id,timestamp,model,input_tokens,output_tokens\n", "text/csv")
        assert header_only.status_code == 400 and header_only.json()["error"]["code"] == "empty_body"
        assert client.get("/api/usage/summary").json()["records"] == 0, "nothing was stored"
