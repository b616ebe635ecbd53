"""Wiring shared by every service: settings, logging, the startup manager and the standard components."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from shared.config import CommonSection, DatabaseSection
from shared.logging import configure_logging
from shared.startup import Component, Priority, RetryPolicy, StartupManager

if TYPE_CHECKING:
    from shared.db.database import Database

log = logging.getLogger("service")


def init_service(name: str, settings: CommonSection) -> StartupManager:
    configure_logging(name, settings.log_level, settings.log_format, settings.google_cloud_project)
    return StartupManager(name)


def database_components(settings: DatabaseSection, application_name: str, deferred: bool = False) -> list[Component]:
    """``database`` (a warm pooled connection) and ``schema`` (at least the version this code needs).
    ``deferred``: see shared.startup.Component.deferred (a service whose first request needs no database).

    The schema check keeps retrying: a service that starts before the migration job becomes ready
    once it has run, without a restart (scenarios 1 and 4).
    """
    from shared.db.database import FatalDatabaseError, get_database
    from shared.startup import FatalStartupError

    def start_database() -> Any:
        db = get_database(settings, application_name)
        try:
            db.warm()
        except FatalDatabaseError as exc:
            raise FatalStartupError(str(exc)) from None
        return db

    def check_schema() -> int:
        from shared.db.migrate import check_schema as check

        db = get_database(settings, application_name)
        with db.connection() as conn:
            return check(conn)

    return [
        Component(
            "database",
            start_database,
            Priority.CRITICAL,
            timeout_s=30.0,
            retry=RetryPolicy(initial_s=0.5, max_s=10.0),
            deferred=deferred,
        ),
        Component(
            "schema",
            check_schema,
            Priority.CRITICAL,
            depends_on=("database",),
            timeout_s=15.0,
            retry=RetryPolicy(initial_s=0.5, max_s=5.0),
            breaker_recovery_s=3.0,
            deferred=deferred,
        ),
    ]


def require_database(manager: StartupManager, wait_s: float, schema: bool = True) -> Database:
    """The ``database`` resource of :func:`database_components`, once the ``schema`` check has passed (each
    waited for up to ``wait_s``, else a 503 with Retry-After). ``schema=False`` waits for the connection only:
    for a caller whose request could only arrive once the instance was ready (schema included)."""
    if not schema:
        return manager.require("database", wait_s)
    manager.require("schema", wait_s)
    return manager.resource("database")
