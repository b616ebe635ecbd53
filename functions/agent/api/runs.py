"""A run's status, its cancel, and its event log (for polling clients and replay)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from functions.agent.api.jsonable import jsonable
from functions.agent.api.schemas import EventsQuery, path_uuid
from functions.agent.context import AgentContext
from functions.agent.eventlog import EventLog
from functions.agent.store import runs as run_store
from functions.agent.terminal import ensure_terminal_event
from shared.errors import ApiError, ServiceUnavailable, not_found
from shared.http import Ctx, Router

log = logging.getLogger("agent.api")


def _age_s(ts: datetime | None) -> float:
    return float("inf") if ts is None else (datetime.now(UTC) - ts).total_seconds()


def register(router: Router, deps: AgentContext) -> None:
    settings = deps.settings
    eventlog = EventLog(settings.google_cloud_project, settings.event_ttl_days)

    def _terminal_event(db: Any, row: dict[str, Any]) -> None:
        """Best effort after the outcome is committed: a worker delivery repairs it if this fails."""
        try:
            deps.manager.require("firestore", settings.startup_wait_seconds)
            deps.manager.require("pubsub", settings.startup_wait_seconds)
            ensure_terminal_event(db, eventlog, row)
        except Exception as exc:
            log.warning(
                "terminal event not written now; the worker will write it",
                extra={"run_id": row["id"], "reason": f"{type(exc).__name__}: {str(exc)[:200]}"},
            )

    def _expire_if_stale(db: Any, row: dict[str, Any]) -> dict[str, Any]:
        """A run past its budget whose worker stopped heart-beating is failed here, so no client waits forever
        (a worker that died on its last delivery attempt is never redelivered)."""
        if row["status"] not in ("queued", "running"):
            return row
        grace = settings.run_lease_s
        if _age_s(row["created_at"]) < settings.run_time_budget_s + grace or _age_s(row["claimed_at"]) < grace:
            return row
        with db.transaction() as tx:
            failed = run_store.fail_unclaimed(
                tx,
                row["id"],
                "run_timed_out",
                "the run did not finish within its time budget and its worker stopped reporting progress",
            )
        if failed is None:
            return run_store.get_run(db, row["id"]) or row
        log.warning("stale run failed", extra={"run_id": row["id"]})
        _terminal_event(db, failed)
        return failed

    def _own_run(ctx: Ctx) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        user = deps.current_user(ctx)
        db = deps.db
        row = run_store.get_run(db, path_uuid(ctx.params["id"], "run"), user["id"])
        if row is None:
            raise not_found("run")
        return db, user, row

    @router.route("GET", "/api/runs/{id}")
    def get_run(ctx: Ctx) -> dict[str, Any]:
        db, _, row = _own_run(ctx)
        row = _expire_if_stale(db, row)
        return jsonable(run_store.run_view(row, run_store.answer_message_id(db, row["id"])))

    @router.route("POST", "/api/runs/{id}/cancel")
    def cancel_run(ctx: Ctx) -> Any:
        db, user, row = _own_run(ctx)
        with db.transaction() as tx:
            updated = run_store.request_cancel(tx, row["id"], user["id"], settings.run_lease_s)
        if updated is None:
            current = run_store.get_run(db, row["id"], user["id"]) or row
            if current["status"] == "cancelled":
                return jsonable(run_store.run_view(current))
            raise ApiError(
                409, "run_finished", f"the run is already {current['status']}", {"status": current["status"]}
            )
        if updated["status"] == "cancelled":
            # No worker is executing it: no worker will emit its terminal event, so the API does.
            _terminal_event(db, updated)
            return jsonable(run_store.run_view(updated))
        return jsonable(run_store.run_view(updated)), 202

    @router.route("GET", "/api/runs/{id}/events")
    def run_events(ctx: Ctx) -> dict[str, Any]:
        _, _, row = _own_run(ctx)
        query = ctx.query(EventsQuery)
        deps.manager.require("firestore", settings.startup_wait_seconds)
        try:
            events = eventlog.events(row["id"], query.after_seq, query.limit)
        except Exception as exc:
            from google.api_core import exceptions as gexc

            if isinstance(exc, gexc.GoogleAPICallError | gexc.RetryError):
                raise ServiceUnavailable(
                    f"the event log is unavailable: {type(exc).__name__}", retry_after=2, code="firestore_unavailable"
                ) from None
            raise
        return {
            "run_id": row["id"],
            "status": row["status"],
            "events": [e.model_dump(mode="json") for e in events],
            "next_after_seq": events[-1].seq if events else query.after_seq,
        }
