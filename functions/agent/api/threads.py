"""Threads and their messages: create, list (cursor), read, rename, delete."""

from __future__ import annotations

from typing import Any

from functions.agent.api.jsonable import jsonable
from functions.agent.api.schemas import PageQuery, ThreadIn, ThreadPatch, path_uuid
from functions.agent.context import AgentContext
from functions.agent.store import threads as store
from shared.errors import not_found
from shared.http import Ctx, Router


def register(router: Router, deps: AgentContext) -> None:
    @router.route("POST", "/api/threads")
    def create_thread(ctx: Ctx) -> tuple[dict[str, Any], int]:
        user = deps.current_user(ctx)
        body = ctx.json(ThreadIn)
        return jsonable(store.create_thread(deps.db, user["id"], body.title, body.metadata)), 201

    @router.route("GET", "/api/threads")
    def list_threads(ctx: Ctx) -> dict[str, Any]:
        user = deps.current_user(ctx)
        query = ctx.query(PageQuery)
        return jsonable(store.list_threads(deps.db, user["id"], query.limit, query.cursor))

    @router.route("GET", "/api/threads/{id}")
    def get_thread(ctx: Ctx) -> dict[str, Any]:
        user = deps.current_user(ctx)
        row = store.get_thread(deps.db, user["id"], path_uuid(ctx.params["id"], "thread"))
        if row is None:
            raise not_found("thread")
        return jsonable(row)

    @router.route("PATCH", "/api/threads/{id}")
    def patch_thread(ctx: Ctx) -> dict[str, Any]:
        user = deps.current_user(ctx)
        thread_id = path_uuid(ctx.params["id"], "thread")
        body = ctx.json(ThreadPatch)
        row = store.update_thread(deps.db, user["id"], thread_id, body.title, body.metadata)
        if row is None:
            raise not_found("thread")
        return jsonable(row)

    @router.route("DELETE", "/api/threads/{id}")
    def delete_thread(ctx: Ctx) -> tuple[None, int]:
        user = deps.current_user(ctx)
        if not store.delete_thread(deps.db, user["id"], path_uuid(ctx.params["id"], "thread")):
            raise not_found("thread")
        return None, 204

    @router.route("GET", "/api/threads/{id}/messages")
    def list_messages(ctx: Ctx) -> dict[str, Any]:
        user = deps.current_user(ctx)
        thread_id = path_uuid(ctx.params["id"], "thread")
        query = ctx.query(PageQuery)
        db = deps.db
        if store.get_thread(db, user["id"], thread_id) is None:
            raise not_found("thread")
        return jsonable(store.list_messages(db, user["id"], thread_id, query.limit, query.cursor))
