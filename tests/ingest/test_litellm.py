"""POST /v1/litellm with what LiteLLM itself sends: its generic logging callback (GenericAPILogger) posting the
StandardLoggingPayload of real ``litellm.acompletion`` calls to a local OpenAI-compatible stand-in, offline
(LITELLM_LOCAL_MODEL_COST_MAP); mapped with the spend-log importer's rules."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.ingest.conftest import IngestServer
from tests.ingest.openai_standin import openai_standin


def send_through_litellm(monkeypatch: pytest.MonkeyPatch, endpoint: str, key: str, calls: int) -> list[Any]:
    """Runs ``calls`` completions through LiteLLM with its generic API logger, flushes it, and returns the
    payloads LiteLLM built (its own StandardLoggingPayload objects)."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of the cost map
    import litellm
    from litellm.integrations.generic_api.generic_api_callback import GenericAPILogger

    async def run() -> list[Any]:
        logger = GenericAPILogger(endpoint=endpoint, headers={"Authorization": f"Bearer {key}"}, flush_interval=60)
        sent: list[Any] = []
        post = logger.async_httpx_client.post

        async def spy(**kwargs: Any) -> Any:
            sent.extend(json.loads(kwargs["data"]))
            response = await post(**kwargs)
            assert response.status_code == 200, response.text
            return response

        logger.async_httpx_client.post = spy  # type: ignore[method-assign]
        previous = litellm.callbacks
        litellm.callbacks = [logger]
        try:
            with openai_standin() as standin:
                standin.usage = {
                    "prompt_tokens": 1500,
                    "completion_tokens": 220,
                    "total_tokens": 1720,
                    "prompt_tokens_details": {"cached_tokens": 1024},
                    "completion_tokens_details": {"reasoning_tokens": 20},
                }
                for _ in range(calls):
                    await litellm.acompletion(
                        model="openai/gpt-4o-mini",
                        api_base=standin.url,
                        api_key="sk-test",
                        messages=[{"role": "user", "content": "hi"}],
                        max_tokens=300,
                        metadata={"tags": ["faq-bot"]},
                    )
                for _ in range(100):  # success callbacks run as tasks after the call returns
                    if len(logger.log_queue) >= calls:
                        break
                    await asyncio.sleep(0.05)
                await logger.flush_queue()
        finally:
            litellm.callbacks = previous
        return sent

    return asyncio.run(run())


def test_litellm_generic_callback_arrives_as_records(ingest: IngestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    user = ingest.user()
    key = ingest.new_key(user)
    sent = send_through_litellm(monkeypatch, f"{ingest.url}/v1/litellm", key, calls=2)
    assert len(sent) == 2
    rows = ingest.records(user)
    assert sorted(r["request_id"] for r in rows) == sorted(p["id"] for p in sent)
    for row in rows:
        assert (row["provider"], row["model"], row["status"]) == ("openai", "gpt-4o-mini", "ok")
        # spend-log rules: prompt includes cached, completion includes reasoning
        assert (row["input_tokens"], row["cached_input_tokens"], row["cache_write_tokens"]) == (476, 1024, 0)
        assert (row["output_tokens"], row["reasoning_tokens"]) == (200, 20)
        assert row["max_tokens"] == 300 and row["latency_ms"] is not None
    # LiteLLM's retry of the same batch adds nothing
    again = httpx.post(
        f"{ingest.url}/v1/litellm", json=sent, headers={"Authorization": f"Bearer {key}"}, trust_env=False
    )
    assert again.status_code == 200 and again.json()["inserted"] == 0 and again.json()["duplicates"] == 2
    assert len(ingest.records(user)) == 2


def test_litellm_payload_formats_and_refusals(ingest: IngestServer) -> None:
    user = ingest.user()
    key = ingest.new_key(user)
    payload = {
        "id": "chatcmpl-litellm-1",
        "call_type": "acompletion",
        "status": "failure",
        "custom_llm_provider": "anthropic",
        "model": "claude-sonnet-4-5-20250929",
        "prompt_tokens": 900,
        "completion_tokens": 0,
        "startTime": 1764000000.0,
        "endTime": 1764000001.25,
        "request_tags": ["summaries"],
        "end_user": "acct-9",
        "metadata": {"usage_object": {"cache_read_input_tokens": 400, "cache_creation_input_tokens": 100}},
        "model_parameters": {"max_tokens": 64},
    }
    headers = {"Authorization": f"Bearer {key}"}
    unknown = {**payload, "id": "x2", "model": "mystery-model", "custom_llm_provider": None}
    ndjson = json.dumps(payload) + "\n" + json.dumps(unknown) + "\n"
    response = httpx.post(f"{ingest.url}/v1/litellm", content=ndjson, headers=headers, trust_env=False)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["received"], body["inserted"], body["rejected"]) == (2, 1, 1)
    assert "mystery-model" in body["errors"][0]
    (row,) = ingest.records(user)
    assert (row["status"], row["feature"], row["end_user"], row["latency_ms"]) == ("error", "summaries", "acct-9", 1250)
    assert (row["input_tokens"], row["cached_input_tokens"], row["cache_write_tokens"]) == (400, 400, 100)
    bad = httpx.post(f"{ingest.url}/v1/litellm", content=b"{oops", headers=headers, trust_env=False)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_payload"
    empty = httpx.post(f"{ingest.url}/v1/litellm", content=b"", headers=headers, trust_env=False)
    assert empty.status_code == 400
    revoked = httpx.post(f"{ingest.url}/v1/litellm", json=[payload], trust_env=False)
    assert revoked.status_code == 401
