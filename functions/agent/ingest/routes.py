"""Ingest routes of the agent API.

Signed-in user (access token): ``POST /api/ingest/keys``, ``GET /api/ingest/keys``,
``DELETE /api/ingest/keys/{key_id}``, ``GET /api/ingest/status``.
Ingest key (``Authorization: Bearer nik_...`` or ``X-Ingest-Key``), and nothing else: ``POST /v1/traces``
(OTLP/HTTP, protobuf or JSON, gzip allowed) and ``POST /v1/litellm`` (LiteLLM's generic logging callback).
"""

from __future__ import annotations

import logging
import zlib
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from functions.agent.ingest import keys, otlp, writer
from functions.agent.ingest.litellm_payload import map_body
from shared.errors import ApiError, not_found
from shared.http import Ctx, Router

if TYPE_CHECKING:
    from functions.agent.context import AgentContext

log = logging.getLogger("agent.ingest")

KEY_HEADER = "X-Ingest-Key"
ATTRIBUTE_PATTERN = r"^[A-Za-z0-9_.\-]{1,100}$"


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=100, description="what the key is for, e.g. prod collector")
    feature_attribute: str | None = Field(
        None,
        pattern=ATTRIBUTE_PATTERN,
        description="span or resource attribute that names the feature (default service.name)",
    )
    end_user_attribute: str | None = Field(
        None,
        pattern=ATTRIBUTE_PATTERN,
        description="span or resource attribute that names the end user (default user.id)",
    )


class KeyPath(BaseModel):
    key_id: str = Field(..., pattern=r"^[0-9a-fA-F-]{36}$")


def presented_key(ctx: Ctx) -> str | None:
    header = ctx.request.headers.get(KEY_HEADER)
    if header:
        return header.strip()
    return ctx.bearer


def read_body(ctx: Ctx, max_body: int, max_decompressed: int) -> bytes:
    body = ctx.request.get_data(cache=False)
    if len(body) > max_body:  # a chunked body has no Content-Length for the router to check
        raise ApiError(413, "payload_too_large", f"request body exceeds {max_body} bytes; export smaller batches")
    encoding = (ctx.request.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise ApiError(415, "unsupported_encoding", f"Content-Encoding must be gzip or identity, got {encoding!r}")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, max_decompressed + 1)
    except zlib.error as exc:
        raise ApiError(400, "invalid_gzip", f"the body is not valid gzip ({exc})") from None
    if len(data) > max_decompressed or inflater.unconsumed_tail:
        raise ApiError(
            413, "payload_too_large", f"the decompressed body exceeds {max_decompressed} bytes; export smaller batches"
        )
    if not inflater.eof:
        raise ApiError(400, "invalid_gzip", "the gzip body is truncated")
    return data


def register(router: Router, deps: AgentContext, request_rollup: Any = None) -> None:
    """``request_rollup(user_id, data_version) -> bool`` is called after a batch that made the user's rollups due
    for a refresh (at most every INGEST_ROLLUP_REFRESH_S); False or an exception leaves the request to the next
    batch."""
    max_body = router.max_body_bytes

    def settings() -> Any:
        return deps.settings

    def authenticate(ctx: Ctx) -> keys.IngestKey:
        presented = presented_key(ctx)
        if not presented:
            raise ApiError(
                401,
                "ingest_key_missing",
                f"send an ingest key as 'Authorization: Bearer nik_...' or '{KEY_HEADER}: nik_...'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        found = keys.authenticate(deps.db, presented)
        if found is None:
            raise ApiError(
                401,
                "ingest_key_invalid",
                "the ingest key is unknown or revoked",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return found

    def store(key: keys.IngestKey, source: str, mapped: otlp.Mapped) -> writer.Written:
        written = writer.write(deps.db, settings(), key.user_id, source, mapped)
        if written.rollup_due and written.data_version is not None:
            asked = False
            if request_rollup is not None:
                try:
                    asked = bool(request_rollup(key.user_id, written.data_version))
                except Exception as exc:  # the batch is stored; only the refresh waits
                    log.warning("rollup refresh request failed", extra={"reason": type(exc).__name__})
            if not asked:  # let the next batch ask again instead of waiting out the interval
                try:
                    writer.forget_rollup_request(deps.db, key.user_id)
                except Exception as exc:  # the batch is stored: answer 200, the refresh waits out the interval
                    log.warning("rollup request not reset", extra={"reason": type(exc).__name__})
        return written

    @router.route("POST", "/v1/traces")
    def traces(ctx: Ctx) -> Any:
        from flask import Response

        kind = otlp.media_type(ctx.request.content_type)
        answer_kind = otlp.PROTOBUF if kind == otlp.PROTOBUF else otlp.JSON
        try:
            key = authenticate(ctx)
            body = read_body(ctx, max_body, settings().ingest_max_decompressed_bytes)
            try:
                request = otlp.decode(body, kind)
            except otlp.PayloadError as exc:
                raise ApiError(exc.status, exc.code, exc.message) from None
            mapped, _total = otlp.map_request(request, key.feature_attribute, key.end_user_attribute)
            store(key, "otlp", mapped)
        except ApiError as exc:
            payload, media = otlp.error_body(exc.status, exc.code, exc.message, answer_kind)
            return Response(payload, status=exc.status, headers=exc.headers, content_type=media)
        payload, media = otlp.response_body(mapped, answer_kind)
        return Response(payload, status=200, content_type=media)

    @router.route("POST", "/v1/litellm")
    def litellm(ctx: Ctx) -> Any:
        key = authenticate(ctx)
        body = read_body(ctx, max_body, settings().ingest_max_decompressed_bytes)
        try:
            mapped, received = map_body(body)
        except otlp.PayloadError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
        try:
            written = store(key, "litellm", mapped)
        except ApiError as exc:
            if exc.status != 429:
                raise
            # LiteLLM's logger retries 5xx answers (with its max_retries) but drops a batch answered 429, so
            # back-pressure is a 503 here: same Retry-After, same meaning, and the batch is sent again.
            raise ApiError(503, exc.code, exc.message, headers=exc.headers) from None
        return {
            "received": received,
            "inserted": written.inserted,
            "duplicates": written.duplicates,
            "rejected": mapped.rejected,
            "errors": mapped.problems,
        }

    # -- key management (signed-in user) -------------------------------------------------------------------
    @router.route("POST", "/api/ingest/keys")
    def create_key(ctx: Ctx) -> Any:
        user = deps.current_user(ctx)
        body = ctx.json(CreateKey)
        try:
            created = keys.create(deps.db, user["id"], body.name, body.feature_attribute, body.end_user_attribute)
        except keys.TooManyKeys as exc:
            raise ApiError(409, "too_many_keys", str(exc)) from None
        return created, 201

    @router.route("GET", "/api/ingest/keys")
    def list_keys(ctx: Ctx) -> Any:
        user = deps.current_user(ctx)
        return {"keys": keys.list_keys(deps.db, user["id"])}

    @router.route("DELETE", "/api/ingest/keys/{key_id}")
    def revoke_key(ctx: Ctx) -> Any:
        user = deps.current_user(ctx)
        try:
            key_id = KeyPath(key_id=ctx.params["key_id"]).key_id
        except ValueError:
            raise not_found("ingest key") from None
        revoked = keys.revoke(deps.db, user["id"], key_id)
        if revoked is None:
            raise not_found("ingest key")
        return revoked

    @router.route("GET", "/api/ingest/status")
    def status(ctx: Ctx) -> Any:
        user = deps.current_user(ctx)
        return status_doc(deps.db, user["id"])


def status_doc(db: Any, user_id: str) -> dict[str, Any]:
    sources = db.all(
        """SELECT source, records, duplicates, ignored, rejected, last_record_ts, last_ingested_at
             FROM usage_ingest_sources WHERE user_id = %s ORDER BY source""",
        [user_id],
    )
    uploads = db.one(
        """SELECT COALESCE(sum(rows_inserted), 0) AS records, max(created_at) AS last_ingested_at
             FROM usage_uploads WHERE user_id = %s""",
        [user_id],
    ) or {"records": 0, "last_ingested_at": None}

    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    out = [
        {
            "source": r["source"],
            "records": int(r["records"]),
            "duplicates": int(r["duplicates"]),
            "ignored": int(r["ignored"]),
            "rejected": int(r["rejected"]),
            "last_record_ts": iso(r["last_record_ts"]),
            "last_ingested_at": iso(r["last_ingested_at"]),
        }
        for r in sources
    ]
    out.append(
        {
            "source": "upload",
            "records": int(uploads["records"]),
            "duplicates": None,
            "ignored": None,
            "rejected": None,
            "last_record_ts": None,
            "last_ingested_at": iso(uploads["last_ingested_at"]),
        }
    )
    live = [s["last_ingested_at"] for s in out if s["source"] != "upload" and s["last_ingested_at"]]
    return {
        "keys": keys.list_keys(db, user_id),
        "sources": out,
        "last_ingested_at": max(live) if live else None,
        "endpoints": {"otlp_traces": "/v1/traces", "litellm": "/v1/litellm"},
    }
