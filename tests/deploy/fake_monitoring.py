"""An in-process fake of the Cloud Monitoring API v3 (MetricService.ListTimeSeries) served over real gRPC on
127.0.0.1, so the real google-cloud-monitoring client talks to it through its own transport.

It holds delta points (count per revision and label set, or latency samples) and answers the aggregations
the release gate asks for, the way Monitoring does: ``ALIGN_DELTA`` then ``REDUCE_SUM`` (ints) or
``REDUCE_PERCENTILE_95`` (of the pooled latency samples), grouped by the requested labels, for points
inside the request's interval. Anything else is refused with INVALID_ARGUMENT, so a query the fake does not
understand fails the test instead of passing on an empty answer. Points become visible
``visibility_delay_s`` after they end (Cloud Run's metrics lag up to 180 s).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from google.api import metric_pb2, monitored_resource_pb2
from google.cloud import monitoring_v3
from google.protobuf import timestamp_pb2

Aligner = monitoring_v3.Aggregation.Aligner
Reducer = monitoring_v3.Aggregation.Reducer
_CLAUSE = re.compile(r'^\s*([a-z_.]+)\s*=\s*"([^"]*)"\s*$')


@dataclass
class Point:
    start: float
    end: float
    metric: str
    revision: str
    service: str
    labels: dict[str, str] = field(default_factory=dict)
    count: int = 0
    samples: list[float] = field(default_factory=list)


class FakeMonitoring:
    def __init__(self, project: str = "proj", now: Callable[[], float] | None = None) -> None:
        self.project = project
        self.now = now
        self.visibility_delay_s = 0.0
        self.points: list[Point] = []
        self.known_metrics: set[str] = {"run.googleapis.com/request_count", "run.googleapis.com/request_latencies"}
        self.queries: list[monitoring_v3.ListTimeSeriesRequest] = []
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.address = ""

    def add(self, point: Point) -> None:
        with self._lock:
            self.points.append(point)

    # -- API --------------------------------------------------------------------------------------------
    def list_time_series(
        self, request: monitoring_v3.ListTimeSeriesRequest, context: grpc.ServicerContext
    ) -> monitoring_v3.ListTimeSeriesResponse:
        self.queries.append(request)
        if request.name != f"projects/{self.project}":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"no access to {request.name}")
        where: dict[str, str] = {}
        for clause in request.filter.split(" AND "):
            m = _CLAUSE.match(clause)
            if not m:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"fake does not parse filter clause {clause!r}")
            where[m.group(1)] = m.group(2)
        metric = where.pop("metric.type", "")
        if metric not in self.known_metrics:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Cannot find metric(s) that match type = {metric!r}")
        if where.pop("resource.type", "") != "cloud_run_revision" or set(where) != {"resource.labels.service_name"}:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unexpected filter {request.filter!r}")
        agg = request.aggregation
        if agg.per_series_aligner != Aligner.ALIGN_DELTA or agg.cross_series_reducer not in (
            Reducer.REDUCE_SUM,
            Reducer.REDUCE_PERCENTILE_95,
        ):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "fake supports ALIGN_DELTA + REDUCE_SUM/PERCENTILE_95")
        if agg.alignment_period.total_seconds() < 60:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "alignment period must be at least 60 s")
        start = request.interval.start_time.timestamp()
        end = request.interval.end_time.timestamp()
        visible_until = (self.now() if self.now else math.inf) - self.visibility_delay_s
        percentile = agg.cross_series_reducer == Reducer.REDUCE_PERCENTILE_95
        groups: dict[tuple[tuple[str, str], ...], list[Point]] = {}
        with self._lock:
            for p in self.points:
                if p.metric != metric or p.service != where["resource.labels.service_name"]:
                    continue
                if p.start < start or p.end > end or p.end > visible_until:
                    continue
                key = []
                for field_name in agg.group_by_fields:
                    if field_name == "resource.labels.revision_name":
                        key.append((field_name, p.revision))
                    elif field_name.startswith("metric.labels."):
                        key.append((field_name, p.labels.get(field_name.removeprefix("metric.labels."), "")))
                    else:
                        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"fake cannot group by {field_name}")
                groups.setdefault(tuple(key), []).append(p)
        interval = monitoring_v3.TimeInterval(
            start_time=timestamp_pb2.Timestamp(seconds=int(start)), end_time=timestamp_pb2.Timestamp(seconds=int(end))
        )
        out = []
        for key, points in groups.items():
            labels = dict(key)
            resource = monitored_resource_pb2.MonitoredResource(
                type="cloud_run_revision",
                labels={
                    "service_name": where["resource.labels.service_name"],
                    **{k.rsplit(".", 1)[-1]: v for k, v in labels.items() if k.startswith("resource.")},
                },
            )
            metric_labels = {k.rsplit(".", 1)[-1]: v for k, v in labels.items() if k.startswith("metric.")}
            if percentile:
                samples = sorted(s for p in points for s in p.samples)
                if not samples:
                    continue
                p95 = samples[max(0, math.ceil(0.95 * len(samples)) - 1)]
                value = monitoring_v3.TypedValue(double_value=p95)
                kind, vtype = metric_pb2.MetricDescriptor.GAUGE, metric_pb2.MetricDescriptor.DOUBLE
            else:
                value = monitoring_v3.TypedValue(int64_value=sum(p.count for p in points))
                kind, vtype = metric_pb2.MetricDescriptor.DELTA, metric_pb2.MetricDescriptor.INT64
            out.append(
                monitoring_v3.TimeSeries(
                    metric=metric_pb2.Metric(type=metric, labels=metric_labels),
                    resource=resource,
                    metric_kind=kind,
                    value_type=vtype,
                    points=[monitoring_v3.Point(interval=interval, value=value)],
                )
            )
        return monitoring_v3.ListTimeSeriesResponse(time_series=out)

    # -- server -----------------------------------------------------------------------------------------
    def start(self) -> FakeMonitoring:
        handler = grpc.method_handlers_generic_handler(
            "google.monitoring.v3.MetricService",
            {
                "ListTimeSeries": grpc.unary_unary_rpc_method_handler(
                    self.list_time_series,
                    request_deserializer=monitoring_v3.ListTimeSeriesRequest.deserialize,
                    response_serializer=monitoring_v3.ListTimeSeriesResponse.serialize,
                )
            },
        )
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self._server.add_generic_rpc_handlers((handler,))
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.address = f"127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)
