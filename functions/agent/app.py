"""``create_app(settings, role)``: the agent service (API or worker) with its :class:`AgentContext`.

One source, two deployed functions: the role says which one this instance serves, so it registers only the
startup components that function needs and builds only its handler. The other handler exists too and
answers with a clear error (a deployment that routes to the wrong target), never a NameError.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from functions.agent.components import components
from functions.agent.context import AgentContext
from functions.agent.settings import AgentSettings
from shared.service import init_service

if TYPE_CHECKING:
    from functions.agent.worker.handler import Worker
    from shared.http import Router


class Role(StrEnum):
    API = "api"
    WORKER = "worker"

    @classmethod
    def for_target(cls, function_target: str | None) -> Role:
        """functions-framework (and Cloud Functions) set FUNCTION_TARGET before importing main.py."""
        return cls.WORKER if function_target == "agent_worker" else cls.API


class AgentApp:
    """What main.py's two entry points call: ``http`` (agent_api) and ``event`` (agent_worker)."""

    def __init__(self, context: AgentContext, role: Role) -> None:
        self.context = context
        self.role = role
        self.router: Router | None = None
        self.worker: Worker | None = None
        if role is Role.API:
            from functions.agent.api.app import build_router

            context.limiter  # noqa: B018 - made now, as before the context was shared with the worker
            self.router = build_router(context)
        else:
            from functions.agent.worker.handler import Worker

            self.worker = Worker(context.settings, context.manager)

    def _wrong_role(self, wanted: Role) -> RuntimeError:
        return RuntimeError(f"this instance serves the agent {self.role}, not the {wanted} (FUNCTION_TARGET)")

    def http(self, request: Any) -> Any:
        if self.router is None:
            raise self._wrong_role(Role.API)
        try:
            return self.router(request)
        finally:
            self.context.manager.release_deferred()  # deferred components (Component.deferred) may start now

    def event(self, data: Any) -> None:
        """One Pub/Sub push: ``usage-rollups`` (told apart by its ``kind`` attribute) or ``agent-requests``.
        Raises RetryLater for a delivery Pub/Sub should redeliver."""
        if self.worker is None:
            raise self._wrong_role(Role.WORKER)
        from functions.agent.worker import rollups

        if rollups.is_rollup_request(data):
            rollups.handle(self.worker, data)
        else:
            self.worker.handle(data)


def create_app(settings: AgentSettings, role: Role) -> AgentApp:
    manager = init_service("agent-worker" if role is Role.WORKER else "agent-api", settings)
    manager.register_all(components(role, settings))
    app = AgentApp(AgentContext(settings, manager), role)
    manager.start_when_serving()
    return app
