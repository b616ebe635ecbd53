"""Revisions, health and traffic of one Cloud Run service (ws_bridge, or the service behind a gen2 function).

Built on the google-cloud-run client. The clients are the narrow seam: :func:`make_clients` builds real ones
(application default credentials, or a plain channel to ``CLOUD_RUN_API_HOST`` for tests); the tests pass
clients whose transport talks to an in-process fake of the Cloud Run Admin API.

- ``status``: every revision, newest first, with its readiness condition and traffic share.
- ``promote``: move 100 % of traffic to a revision (default: the newest) only if Cloud Run reports it ready
  (its startup probe passed: ``/health/ready`` for ws_bridge) and, when asked, an HTTP health check of the
  revision's own tagged URL passes; then optionally verify a public URL and roll back if it fails.
- ``rollback``: move 100 % of traffic to the newest ready revision older than the one serving now.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from shared.deploy.errors import DeployError
from shared.deploy.health import HealthResult, check_ready

log = logging.getLogger("deploy")

CANDIDATE_TAG = "candidate"
UPDATE_TIMEOUT_S = 300.0


@dataclass
class RevisionInfo:
    name: str  # short name, e.g. netra-ws-bridge-00042-abc
    created: str
    ready: bool
    ready_state: str
    ready_message: str
    percent: int
    tags: list[str] = field(default_factory=list)


@dataclass
class ServiceStatus:
    service: str
    uri: str
    latest_created: str
    latest_ready: str
    revisions: list[RevisionInfo]

    def serving(self) -> list[RevisionInfo]:
        return [r for r in self.revisions if r.percent > 0]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def service_path(project: str, region: str, service: str) -> str:
    return f"projects/{project}/locations/{region}/services/{service}"


def make_clients(api_host: str | None = None) -> tuple[Any, Any]:
    """(ServicesClient, RevisionsClient). ``api_host`` or CLOUD_RUN_API_HOST (tests only): plain gRPC there."""
    from google.cloud import run_v2

    host = api_host or os.environ.get("CLOUD_RUN_API_HOST")
    if not host:
        return run_v2.ServicesClient(), run_v2.RevisionsClient()
    import grpc
    from google.cloud.run_v2.services.revisions.transports import RevisionsGrpcTransport
    from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

    channel = grpc.insecure_channel(host)
    return (
        run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel)),
        run_v2.RevisionsClient(transport=RevisionsGrpcTransport(channel=channel)),
    )


def _ready_condition(revision: Any) -> tuple[bool, str, str]:
    for cond in revision.conditions:
        if cond.type_ == "Ready":
            state = cond.state.name if hasattr(cond.state, "name") else str(cond.state)
            return state == "CONDITION_SUCCEEDED", state, cond.message
    return False, "UNKNOWN", "no Ready condition reported"


def _copy_targets(targets: Any) -> list[Any]:
    """Detached copies: elements of a repeated field must not outlive a reassignment of that field."""
    from google.cloud import run_v2

    return [run_v2.TrafficTarget.deserialize(run_v2.TrafficTarget.serialize(t)) for t in targets]


def _created(revision: Any) -> str:
    ts = revision.create_time
    if isinstance(ts, datetime):
        return ts.isoformat()
    return str(ts) if ts else ""


class TrafficManager:
    def __init__(
        self,
        services: Any,
        revisions: Any,
        project: str,
        region: str,
        health_check: Callable[..., HealthResult] = check_ready,
    ) -> None:
        self.services = services
        self.revisions = revisions
        self.project = project
        self.region = region
        self.health_check = health_check

    # -- reading --------------------------------------------------------------------------------------
    def _service(self, service: str) -> Any:
        from google.api_core import exceptions as gexc

        try:
            return self.services.get_service(name=service_path(self.project, self.region, service))
        except gexc.NotFound:
            raise DeployError(
                "service_not_found", f"no Cloud Run service {service!r} in {self.project}/{self.region}"
            ) from None
        except gexc.PermissionDenied:
            raise DeployError(
                "permission_denied", f"not allowed to read service {service!r}; needs roles/run.viewer or more"
            ) from None

    def _revisions(self, svc: Any) -> list[Any]:
        found = list(self.revisions.list_revisions(parent=svc.name))
        return sorted(found, key=lambda r: (_created(r), r.name), reverse=True)

    def status(self, service: str) -> ServiceStatus:
        svc = self._service(service)
        return self._status(svc, self._revisions(svc))

    def _status(self, svc: Any, revisions: list[Any]) -> ServiceStatus:
        shares: dict[str, int] = {}
        tags: dict[str, list[str]] = {}
        # traffic_statuses is what is really served; LATEST entries name no revision.
        for target in svc.traffic_statuses or svc.traffic:
            name = short(target.revision) if target.revision else short(svc.latest_ready_revision)
            if target.percent:
                shares[name] = shares.get(name, 0) + target.percent
            if target.tag:
                tags.setdefault(name, []).append(target.tag)
        infos = []
        for rev in revisions:
            ready, state, message = _ready_condition(rev)
            name = short(rev.name)
            infos.append(
                RevisionInfo(name, _created(rev), ready, state, message, shares.get(name, 0), tags.get(name, []))
            )
        return ServiceStatus(
            short(svc.name), svc.uri, short(svc.latest_created_revision), short(svc.latest_ready_revision), infos
        )

    # -- writing --------------------------------------------------------------------------------------
    def _set_traffic(self, svc: Any, revision: str, tag_candidate: str | None = None) -> Any:
        from google.cloud import run_v2

        kind = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
        targets = [run_v2.TrafficTarget(type_=kind, revision=revision, percent=100)]
        if tag_candidate and tag_candidate != revision:
            targets.append(run_v2.TrafficTarget(type_=kind, revision=tag_candidate, percent=0, tag=CANDIDATE_TAG))
        svc.traffic = targets
        operation = self.services.update_service(service=svc)
        return operation.result(timeout=UPDATE_TIMEOUT_S)

    def _pick(self, status: ServiceStatus, revision: str | None) -> RevisionInfo:
        if not status.revisions:
            raise DeployError("no_revisions", f"service {status.service} has no revisions")
        if revision is None:
            return status.revisions[0]
        for info in status.revisions:
            if info.name == revision:
                return info
        raise DeployError("revision_not_found", f"service {status.service} has no revision {revision!r}")

    def promote(
        self,
        service: str,
        revision: str | None = None,
        health_url: str | None = None,
        verify_url: str | None = None,
        token: str | None = None,
    ) -> ServiceStatus:
        """Give ``revision`` (default: newest) all traffic once it is healthy; verify and roll back if not.

        ``health_url`` is checked before traffic moves; ``{revision_url}`` in it is replaced by the URL of the
        revision tagged ``candidate`` (reachable only where the service's ingress allows). ``verify_url`` is
        checked after traffic moved; on failure the previous traffic split is restored.
        """
        svc = self._service(service)
        status = self._status(svc, self._revisions(svc))
        target = self._pick(status, revision)
        if not target.ready:
            raise DeployError(
                "revision_not_ready",
                f"{target.name} is not ready ({target.ready_state}: {target.ready_message or '-'}); traffic not moved",
            )
        previous = _copy_targets(svc.traffic)
        serving = status.serving()
        if len(serving) == 1 and serving[0].name == target.name and serving[0].percent == 100 and not health_url:
            log.info("already serving", extra={"service": service, "revision": target.name})
            return status
        if health_url:
            url = health_url
            if "{revision_url}" in health_url:
                current = serving[0].name if serving else target.name
                svc = self._set_traffic(svc, current, tag_candidate=target.name)
                tagged = [t.uri for t in svc.traffic_statuses if t.tag == CANDIDATE_TAG and t.uri]
                if not tagged:
                    raise DeployError("no_revision_url", f"Cloud Run gave no URL for the tag on {target.name}")
                url = health_url.replace("{revision_url}", tagged[0].rstrip("/"))
            result = self.health_check(url, token=token)
            if not result.ok:
                svc = self._service(service)
                svc.traffic = previous
                self.services.update_service(service=svc).result(timeout=UPDATE_TIMEOUT_S)
                raise DeployError(
                    "health_check_failed",
                    f"{url} answered {result.status} after {result.attempts} attempt(s): "
                    f"{result.detail[:120]}; traffic not moved",
                )
        svc = self._set_traffic(self._service(service), target.name)
        log.info("traffic moved", extra={"service": service, "revision": target.name})
        if verify_url:
            result = self.health_check(verify_url, token=token)
            if not result.ok:
                svc = self._service(service)
                svc.traffic = previous
                self.services.update_service(service=svc).result(timeout=UPDATE_TIMEOUT_S)
                raise DeployError(
                    "verify_failed",
                    f"{verify_url} answered {result.status} after promoting {target.name}; previous traffic restored",
                    exit_code=4,
                )
        return self.status(service)

    def rollback(self, service: str, to_revision: str | None = None) -> ServiceStatus:
        """All traffic to ``to_revision``, or to the newest ready revision older than the one serving now."""
        svc = self._service(service)
        status = self._status(svc, self._revisions(svc))
        if to_revision is not None:
            target = self._pick(status, to_revision)
        else:
            serving = status.serving()
            if not serving:
                raise DeployError("nothing_serving", f"service {status.service} serves no revision")
            newest_serving = max(serving, key=lambda r: (r.created, r.name))
            older = [r for r in status.revisions if (r.created, r.name) < (newest_serving.created, newest_serving.name)]
            candidates = [r for r in older if r.ready]
            if not candidates:
                raise DeployError(
                    "no_previous_revision", f"no ready revision older than {newest_serving.name} to roll back to"
                )
            target = candidates[0]
        if not target.ready:
            raise DeployError("revision_not_ready", f"{target.name} is not ready ({target.ready_state})")
        self._set_traffic(svc, target.name)
        log.info("rolled back", extra={"service": service, "revision": target.name})
        return self.status(service)
