"""Usage routes of the agent API: upload (``POST /api/usage``), ``GET /api/usage/summary``,
``GET /api/usage/schema`` and ``DELETE /api/usage``. Every route acts on the caller's own data only.

Large files are sent in parts: each part is one request of at most the API's MAX_BODY_BYTES (1 MiB by default)
and MAX_ROWS_PER_PART rows, is stored atomically on its own, and may be re-sent safely (rows are idempotent by
request_id). ``python -m functions.agent.usage.upload FILE`` splits and sends a file this way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from functions.agent.usage import store
from functions.agent.usage.formats import BodyError
from functions.agent.usage.schema import FIELD_DOCS, REQUIRED
from shared.errors import ApiError
from shared.http import Ctx, Router

if TYPE_CHECKING:
    from functions.agent.context import AgentContext

MAX_ROWS_PER_PART = 20_000


class UploadQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["auto", "netra", "litellm", "openai"] = "auto"
    part: int | None = Field(None, ge=1, le=100_000, description="part number when a file is sent in parts")
    first_row: int = Field(1, ge=1, description="row number of this part's first row in the whole file")


class DeleteQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    upload_id: str | None = Field(None, pattern=r"^[0-9a-fA-F-]{36}$")


def schema_doc(max_body_bytes: int) -> dict[str, Any]:
    return {
        "formats": {
            "netra": "JSONL, a JSON array or CSV (header row) with the fields below",
            "litellm": "LiteLLM proxy spend logs (LiteLLM_SpendLogs rows, JSON or CSV export)",
            "openai": "request logs with a provider usage object: OpenAI chat completions / Responses / Batch "
            "output, {request, response} pairs, Anthropic messages, Gemini usageMetadata",
        },
        "fields": FIELD_DOCS,
        "required": list(REQUIRED),
        "limits": {"max_body_bytes": max_body_bytes, "max_rows_per_part": MAX_ROWS_PER_PART},
        "parts": "send larger files as several POST /api/usage requests (?part=N&first_row=R); CSV parts repeat "
        "the header; each part is atomic and may be re-sent (rows are idempotent by request_id)",
    }


def register(router: Router, deps: AgentContext) -> None:
    limit = router.max_body_bytes

    @router.route("POST", "/api/usage")
    def upload(ctx: Ctx) -> Any:
        user = deps.current_user(ctx)
        query = ctx.query(UploadQuery)
        body = ctx.request.get_data(cache=False)
        if len(body) > limit:  # a chunked body has no Content-Length for the router to check
            raise ApiError(
                413,
                "payload_too_large",
                f"request body exceeds {limit} bytes; send the file in parts",
                {"limit_bytes": limit},
            )
        try:
            checked = store.validate_body(body, ctx.request.content_type or "", query.format, query.first_row)
        except BodyError as exc:
            raise ApiError(400, exc.code, exc.message) from None
        if checked.received > MAX_ROWS_PER_PART:
            raise ApiError(
                413,
                "too_many_rows",
                f"a part may hold at most {MAX_ROWS_PER_PART} rows; send the file in parts",
                {"rows": checked.received, "limit_rows": MAX_ROWS_PER_PART},
            )
        if checked.error_count:
            raise ApiError(
                422,
                "invalid_rows",
                f"{checked.error_count} problem(s) in {checked.received} row(s); nothing was stored",
                {
                    "errors": checked.errors,
                    "error_count": checked.error_count,
                    "rows_received": checked.received,
                    "format": checked.format,
                },
            )
        result = store.insert_rows(deps.db, user["id"], checked.rows, checked.format, query.part, deps.settings)
        return result, 201 if result["rows_inserted"] else 200

    @router.route("GET", "/api/usage/summary")
    def summary(ctx: Ctx) -> Any:
        user = deps.current_user(ctx)
        return store.summary(deps.db, user["id"])

    @router.route("GET", "/api/usage/schema")
    def schema(ctx: Ctx) -> Any:
        deps.current_user(ctx)
        return schema_doc(limit)

    @router.route("DELETE", "/api/usage")
    def delete(ctx: Ctx) -> Any:
        user = deps.current_user(ctx)
        query = ctx.query(DeleteQuery)
        # The service always has settings; a router built without them (tests) keeps the pool's timeout.
        timeout_ms = deps.settings.usage_delete_statement_timeout_ms if deps.settings is not None else None
        return store.delete(deps.db, user["id"], query.upload_id, timeout_ms)
