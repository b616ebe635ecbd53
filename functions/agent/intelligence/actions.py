"""The actions agent's plans: for each ranked recommendation, concrete steps and a config or code snippet for
the provider at hand. Templates only; every value in them comes from the recommendation (so from a tool).
"""

from __future__ import annotations

from typing import Any

from shared.pricing import get_price


def _provider(model: str) -> str:
    try:
        return get_price(model).provider
    except KeyError:
        return "unknown"


def _caching(rec: dict[str, Any]) -> tuple[list[str], str, str]:
    model, details = rec["model"], rec["details"]
    provider = _provider(model)
    minimum = details.get("min_cacheable_tokens")
    steps = [
        "Put the static part of the prompt (system prompt, instructions, examples, tool definitions) first and "
        "the per-request part (user message, retrieved text, timestamps) last.",
        f"Keep that prefix byte-identical between calls; it must be at least {minimum} tokens long on {model}.",
    ]
    if provider == "anthropic":
        steps.append("Mark the end of the static prefix with cache_control; reads then cost a tenth of input.")
        snippet = (
            "response = client.messages.create(\n"
            f'    model="{model}",\n'
            "    max_tokens=MAX_TOKENS,\n"
            '    system=[{"type": "text", "text": STATIC_SYSTEM_PROMPT,\n'
            '             "cache_control": {"type": "ephemeral"}}],  # cached prefix\n'
            '    messages=[{"role": "user", "content": user_message}],  # varying part last\n'
            ")\n"
            "print(response.usage.cache_read_input_tokens, response.usage.cache_creation_input_tokens)"
        )
    elif provider == "google":
        steps.append("Gemini caches repeated prefixes implicitly; check cached_content_token_count in the usage.")
        snippet = (
            "response = client.models.generate_content(\n"
            f'    model="{model}",\n'
            "    contents=[STATIC_CONTEXT, user_message],  # identical prefix first, varying part last\n"
            ")\n"
            "print(response.usage_metadata.cached_content_token_count)"
        )
    else:
        steps.append("Prompt caching is automatic; a prompt_cache_key keeps similar requests on the same cache.")
        snippet = (
            "response = client.chat.completions.create(\n"
            f'    model="{model}",\n'
            '    messages=[{"role": "system", "content": STATIC_SYSTEM_PROMPT},  # cached prefix\n'
            '              {"role": "user", "content": user_message}],       # varying part last\n'
            '    prompt_cache_key="my-feature-v1",\n'
            ")\n"
            "print(response.usage.prompt_tokens_details.cached_tokens)"
        )
    return steps, "python", snippet


def _response_cache(rec: dict[str, Any]) -> tuple[list[str], str, str]:
    steps = [
        "Key each request by a hash of the model, the messages and the sampling parameters.",
        "Return the stored answer on a hit; store the answer on a miss with an expiry that fits the content.",
        "Skip the cache for personalised or time-sensitive prompts.",
    ]
    snippet = (
        "def cached_completion(cache, client, **request):\n"
        "    key = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()\n"
        "    if (hit := cache.get(key)) is not None:\n"
        "        return hit\n"
        "    answer = client.chat.completions.create(**request)\n"
        "    cache.set(key, answer, ttl=CACHE_TTL_SECONDS)\n"
        "    return answer"
    )
    return steps, "python", snippet


def _batch(rec: dict[str, Any]) -> tuple[list[str], str, str]:
    model = rec["model"]
    provider = _provider(model)
    steps = [
        "Collect the background requests (no one waits for them) into one batch file or request list.",
        "Submit it to the batch API and poll for the results; they arrive within 24 hours.",
    ]
    if not rec["details"].get("stacks_with_cache", True):
        steps.append(
            "This provider does not combine the batch discount with cached-input prices: keep "
            "cache-heavy interactive traffic on the regular API."
        )
    if provider == "anthropic":
        snippet = (
            "batch = client.messages.batches.create(requests=[\n"
            f'    {{"custom_id": job.id, "params": {{"model": "{model}", "max_tokens": MAX_TOKENS,\n'
            '                                      "messages": job.messages}}\n'
            "    for job in background_jobs])"
        )
    elif provider == "google":
        snippet = (
            "job = client.batches.create(\n"
            f'    model="{model}",\n'
            '    src=[{"contents": job.contents} for job in background_jobs],\n'
            ")"
        )
    else:
        snippet = (
            '# requests.jsonl: one {"custom_id", "method": "POST", "url": "/v1/chat/completions", '
            '"body"} per line\n'
            'upload = client.files.create(file=open("requests.jsonl", "rb"), purpose="batch")\n'
            'batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",\n'
            '                              completion_window="24h")'
        )
    return steps, "python", snippet


def _rightsizing(rec: dict[str, Any]) -> tuple[list[str], str, str]:
    target, feature, model = rec["details"]["target_model"], rec["feature"], rec["model"]
    steps = [
        f"Send {feature} traffic to {target}; keep {model} as the fallback.",
        "Compare answers on a labelled sample, then on a slice of live traffic, before moving all of it.",
        f"Quality risk: {rec['risk_note']}.",
    ]
    snippet = (
        "# LiteLLM proxy config: the feature's alias now points at the cheaper model\n"
        "model_list:\n"
        f"  - model_name: {feature}\n"
        "    litellm_params:\n"
        f"      model: {_provider(target)}/{target}\n"
        "router_settings:\n"
        "  fallbacks:\n"
        f'    - {feature}: ["{_provider(model)}/{model}"]'
    )
    return steps, "yaml", snippet


def _trimming(rec: dict[str, Any]) -> tuple[list[str], str, str]:
    details = rec["details"]
    cap = details["suggested_max_tokens"]
    steps = [
        f"Ask for concise answers in the {rec['feature']} prompt (bullet points, no preamble, no restating).",
        f"Set max_tokens to {cap} as a guard rail (answers now average {details['avg_output_tokens']} "
        "tokens); watch for truncated answers (finish_reason = length).",
    ]
    snippet = (
        "response = client.chat.completions.create(\n"
        f'    model="{rec["model"]}",\n'
        '    messages=[{"role": "system", "content": "Answer concisely. No preamble."}, *messages],\n'
        f"    max_tokens={cap},\n"
        ")"
    )
    return steps, "python", snippet


def _long_context(rec: dict[str, Any]) -> tuple[list[str], str, str]:
    threshold = rec["details"]["threshold_tokens"]
    steps = [
        f"Count prompt tokens before the call; above {threshold} the whole request is billed at the long-context rate.",
        "Retrieve fewer, better-ranked passages or summarise old conversation turns to stay under it.",
    ]
    snippet = (
        f"LONG_CONTEXT_THRESHOLD = {threshold}\n"
        "if count_tokens(prompt) > LONG_CONTEXT_THRESHOLD:\n"
        "    history = summarise(history)\n"
        "    passages = passages[:MAX_PASSAGES]"
    )
    return steps, "python", snippet


PLANNERS = {
    "prompt_caching": _caching,
    "response_cache": _response_cache,
    "batch": _batch,
    "rightsizing": _rightsizing,
    "output_trimming": _trimming,
    "long_context": _long_context,
}


def action_plans(ranked: list[dict[str, Any]], limit: int = 6) -> dict[str, Any]:
    plans = []
    for rec in ranked[:limit]:
        steps, language, snippet = PLANNERS[rec["kind"]](rec)
        plans.append(
            {
                "id": rec["id"],
                "rank": rec["rank"],
                "title": rec["title"],
                "steps": steps,
                "snippet_language": language,
                "snippet": snippet,
            }
        )
    return {"plans": plans}
