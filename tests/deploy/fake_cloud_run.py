"""An in-process fake of the Cloud Run Admin API v2 (Services.GetService/UpdateService, Revisions.ListRevisions)
served over real gRPC on 127.0.0.1, so the real google-cloud-run clients talk to it through their own
transport: only the channel differs from production.

It keeps what the deploy helper needs: services with traffic (LATEST or per revision, tags), the resulting
traffic statuses (tagged targets get a URI built from ``tag_uri``), and revisions with a Ready condition.
"""

from __future__ import annotations

import threading
from concurrent import futures
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import any_pb2

REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
SUCCEEDED = run_v2.Condition.State.CONDITION_SUCCEEDED
FAILED = run_v2.Condition.State.CONDITION_FAILED
PENDING = run_v2.Condition.State.CONDITION_RECONCILING


class FakeCloudRun:
    def __init__(self, project: str = "proj", region: str = "europe-west1") -> None:
        self.project = project
        self.region = region
        self.services: dict[str, run_v2.Service] = {}
        self.revisions: dict[str, list[run_v2.Revision]] = {}
        self.updates: list[list[tuple[str, str, int, str]]] = []  # traffic of every UpdateService call
        self.tag_uri = "https://{tag}---{service}.a.run.app"
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.address = ""

    # -- test setup ---------------------------------------------------------------------------------
    def add_service(self, name: str, revisions: list[tuple[str, bool | str]], serving: str | None = None) -> None:
        """``revisions``: (short name, ready) oldest first; ready ``"pending"``: still starting, for ever.
        ``serving``: revision with 100 %, else LATEST."""
        parent = f"projects/{self.project}/locations/{self.region}"
        full = f"{parent}/services/{name}"
        start = datetime(2025, 1, 1, tzinfo=UTC)
        revs = []
        for i, (rev_name, ready) in enumerate(revisions):
            state = PENDING if ready == "pending" else SUCCEEDED if ready else FAILED
            cond = run_v2.Condition(
                type_="Ready",
                state=state,
                message={
                    SUCCEEDED: "",
                    FAILED: "Container failed the startup probe /health/ready",
                    PENDING: "Deploying revision: waiting for the startup probe",
                }[state],
            )
            revs.append(
                run_v2.Revision(
                    name=f"{full}/revisions/{rev_name}",
                    service=full,
                    create_time=start + timedelta(minutes=i),
                    conditions=[cond],
                )
            )
        self.revisions[full] = revs
        ready_names = [r.name for r in revs if r.conditions[0].state == SUCCEEDED]
        traffic = (
            [run_v2.TrafficTarget(type_=REVISION, revision=serving, percent=100)]
            if serving
            else [run_v2.TrafficTarget(type_=LATEST, percent=100)]
        )
        svc = run_v2.Service(
            name=full,
            uri=f"https://{name}-abc.a.run.app",
            latest_created_revision=revs[-1].name if revs else "",
            latest_ready_revision=ready_names[-1] if ready_names else "",
            traffic=traffic,
        )
        self.services[full] = self._with_statuses(svc)

    def serving(self, name: str) -> dict[str, int]:
        svc = self.services[f"projects/{self.project}/locations/{self.region}/services/{name}"]
        out: dict[str, int] = {}
        for t in svc.traffic_statuses:
            if t.percent:
                out[t.revision.rsplit("/", 1)[-1]] = out.get(t.revision.rsplit("/", 1)[-1], 0) + t.percent
        return out

    # -- API ------------------------------------------------------------------------------------------
    def _with_statuses(self, svc: run_v2.Service) -> run_v2.Service:
        short_service = svc.name.rsplit("/", 1)[-1]
        statuses = []
        for t in svc.traffic:
            revision = t.revision if t.type_ == REVISION else svc.latest_ready_revision.rsplit("/", 1)[-1]
            uri = self.tag_uri.format(tag=t.tag, service=short_service) if t.tag else ""
            statuses.append(
                run_v2.TrafficTargetStatus(type_=t.type_, revision=revision, percent=t.percent, tag=t.tag, uri=uri)
            )
        svc.traffic_statuses = statuses
        return svc

    def get_service(self, request: run_v2.GetServiceRequest, context: grpc.ServicerContext) -> run_v2.Service:
        with self._lock:
            svc = self.services.get(request.name)
        if svc is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"service {request.name} not found")
        return svc

    def update_service(
        self, request: run_v2.UpdateServiceRequest, context: grpc.ServicerContext
    ) -> operations_pb2.Operation:
        with self._lock:
            current = self.services.get(request.service.name)
            if current is None:
                context.abort(grpc.StatusCode.NOT_FOUND, "service not found")
            known = {r.name.rsplit("/", 1)[-1] for r in self.revisions[current.name]}
            for t in request.service.traffic:
                if t.type_ == REVISION and t.revision not in known:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"revision {t.revision} not found")
            if sum(t.percent for t in request.service.traffic) != 100:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "traffic percentages must add up to 100")
            current.traffic = list(request.service.traffic)
            updated = self._with_statuses(current)
            self.services[current.name] = updated
            self.updates.append([(t.type_.name, t.revision, t.percent, t.tag) for t in updated.traffic])
        packed = any_pb2.Any()
        packed.Pack(run_v2.Service.pb(updated))
        return operations_pb2.Operation(
            name=f"{current.name}/operations/{len(self.updates)}", done=True, response=packed
        )

    def list_revisions(
        self, request: run_v2.ListRevisionsRequest, context: grpc.ServicerContext
    ) -> run_v2.ListRevisionsResponse:
        with self._lock:
            revs = list(self.revisions.get(request.parent, []))
        return run_v2.ListRevisionsResponse(revisions=revs)

    # -- server ---------------------------------------------------------------------------------------
    def start(self) -> FakeCloudRun:
        def unary(fn: Any, req_type: Any, resp_serializer: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req_type.deserialize, response_serializer=resp_serializer
            )

        services = grpc.method_handlers_generic_handler(
            "google.cloud.run.v2.Services",
            {
                "GetService": unary(self.get_service, run_v2.GetServiceRequest, run_v2.Service.serialize),
                "UpdateService": unary(
                    self.update_service, run_v2.UpdateServiceRequest, operations_pb2.Operation.SerializeToString
                ),
            },
        )
        revisions = grpc.method_handlers_generic_handler(
            "google.cloud.run.v2.Revisions",
            {
                "ListRevisions": unary(
                    self.list_revisions, run_v2.ListRevisionsRequest, run_v2.ListRevisionsResponse.serialize
                ),
            },
        )
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self._server.add_generic_rpc_handlers((services, revisions))
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.address = f"127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)
