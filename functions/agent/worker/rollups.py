"""A delivery of ``usage-rollups`` (rollup-refresh subscription): refresh the rollups of a user whose records
stream in (functions/agent/ingest asks at most every INGEST_ROLLUP_REFRESH_S per user), so that the chat reads
precomputed analyses at most about a minute behind the data instead of recomputing on every question.

Best effort by design: a request that cannot be read, or an analysis that fails, is logged and acknowledged (the
hourly rollup job and the live computation of the tools cover it); a dependency that is down is retried.
"""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING, Any

from shared.models.rollups import KIND, RollupRequest

if TYPE_CHECKING:
    from functions.agent.worker.handler import Worker

log = logging.getLogger("agent.worker.rollups")


def is_rollup_request(data: Any) -> bool:
    try:
        return data["message"].get("attributes", {}).get("kind") == KIND
    except (KeyError, TypeError, AttributeError):
        return False


def handle(worker: Worker, data: Any) -> None:
    from functions.agent.rollup_job import refresh_user
    from functions.agent.worker.handler import RetryLater, is_infrastructure_error

    try:
        request = RollupRequest.model_validate_json(base64.b64decode(data["message"]["data"]))
    except Exception as exc:
        log.error("dropping malformed rollup request", extra={"reason": f"{type(exc).__name__}: {str(exc)[:200]}"})
        return
    try:
        summary = refresh_user(worker._db(), request.user_id, request.data_version)
    except Exception as exc:
        if is_infrastructure_error(exc):
            raise RetryLater(503, f"rollup refresh: {type(exc).__name__}") from None
        log.error(
            "rollup refresh failed",
            extra={"user_id": request.user_id, "reason": f"{type(exc).__name__}: {str(exc)[:200]}"},
        )
        return
    if summary is None:
        log.info("rollup refresh skipped (running elsewhere or already covered)", extra={"user_id": request.user_id})
    else:
        log.info("rollups refreshed", extra=summary)
