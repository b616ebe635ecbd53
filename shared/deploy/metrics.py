"""Per-revision figures of one Cloud Run service from Cloud Monitoring (google-cloud-monitoring).

Gen2 functions serve from a Cloud Run service of the same name, so one reader covers ws_bridge and the
functions. Each figure is one ``ListTimeSeries`` call aggregated by Monitoring itself (sum, or p95 of the
merged latency distributions), grouped by revision. The client is the seam: :func:`make_monitoring_client`
builds the real one, or one on a plain gRPC channel to ``CLOUD_MONITORING_API_HOST`` (tests only).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from shared.deploy.errors import DeployError

REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
REVISION_LABEL = "resource.labels.revision_name"
CODE_CLASS_LABEL = "metric.labels.response_code_class"


@dataclass
class RevisionFigures:
    requests: int = 0
    errors_5xx: int = 0
    p95_ms: float | None = None
    start_failures: int = 0
    error_logs: int = 0

    @property
    def share_5xx(self) -> float:
        return self.errors_5xx / self.requests if self.requests else 0.0

    @property
    def error_log_share(self) -> float:
        return self.error_logs / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "share_5xx": round(self.share_5xx, 4),
            "error_log_share": round(self.error_log_share, 4),
        }


def make_monitoring_client(api_host: str | None = None) -> Any:
    from google.cloud import monitoring_v3

    host = api_host or os.environ.get("CLOUD_MONITORING_API_HOST")
    if not host:
        return monitoring_v3.MetricServiceClient()
    import grpc
    from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport

    return monitoring_v3.MetricServiceClient(transport=MetricServiceGrpcTransport(channel=grpc.insecure_channel(host)))


class MonitoringReader:
    def __init__(self, client: Any, project: str) -> None:
        self.client = client
        self.project = project

    def _series(
        self, metric: str, service: str, start: float, end: float, reducer: str, group_by: list[str]
    ) -> list[Any]:
        from google.api_core import exceptions as gexc
        from google.cloud import monitoring_v3
        from google.protobuf import duration_pb2, timestamp_pb2

        interval = monitoring_v3.TimeInterval(
            start_time=timestamp_pb2.Timestamp(seconds=int(start)),
            end_time=timestamp_pb2.Timestamp(seconds=int(end)),
        )
        aggregation = monitoring_v3.Aggregation(
            alignment_period=duration_pb2.Duration(seconds=max(60, int(end) - int(start))),
            per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_DELTA,
            cross_series_reducer=getattr(monitoring_v3.Aggregation.Reducer, reducer),
            group_by_fields=group_by,
        )
        query = (
            f'metric.type="{metric}" AND resource.type="cloud_run_revision" '
            f'AND resource.labels.service_name="{service}"'
        )
        try:
            return list(
                self.client.list_time_series(
                    request={
                        "name": f"projects/{self.project}",
                        "filter": query,
                        "interval": interval,
                        "aggregation": aggregation,
                        "view": monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
                    }
                )
            )
        except gexc.NotFound:
            # An unknown metric type: a gate must not pass because its metric does not exist.
            raise DeployError(
                "metric_missing", f"Cloud Monitoring has no metric {metric!r} (is Terraform applied?)"
            ) from None
        except gexc.PermissionDenied:
            raise DeployError(
                "permission_denied", f"not allowed to read {metric} in {self.project}; needs roles/monitoring.viewer"
            ) from None

    @staticmethod
    def _revision(series: Any) -> str:
        return series.resource.labels.get("revision_name", "")

    @staticmethod
    def _number(point: Any) -> float:
        value = point.value
        which = type(value).pb(value).WhichOneof("value")
        return float(getattr(value, which)) if which in ("int64_value", "double_value") else 0.0

    def figures(
        self,
        service: str,
        revisions: list[str],
        start: float,
        end: float,
        start_failure_metric: str,
        error_log_metrics: list[str],
        with_latency: bool = True,
    ) -> dict[str, RevisionFigures]:
        out = {r: RevisionFigures() for r in revisions}
        by_rev_and_class = [REVISION_LABEL, CODE_CLASS_LABEL]
        for series in self._series(REQUEST_COUNT, service, start, end, "REDUCE_SUM", by_rev_and_class):
            figures = out.get(self._revision(series))
            if figures is None:
                continue
            count = int(sum(self._number(p) for p in series.points))
            figures.requests += count
            if series.metric.labels.get("response_code_class") == "5xx":
                figures.errors_5xx += count
        if with_latency:
            for series in self._series(
                REQUEST_LATENCIES, service, start, end, "REDUCE_PERCENTILE_95", [REVISION_LABEL]
            ):
                figures = out.get(self._revision(series))
                if figures is not None and series.points:
                    # Several alignment periods can overlap the interval: the worst one counts.
                    figures.p95_ms = max(self._number(p) for p in series.points)
        for series in self._series(start_failure_metric, service, start, end, "REDUCE_SUM", [REVISION_LABEL]):
            figures = out.get(self._revision(series))
            if figures is not None:
                figures.start_failures += int(sum(self._number(p) for p in series.points))
        for metric in error_log_metrics:
            for series in self._series(metric, service, start, end, "REDUCE_SUM", [REVISION_LABEL]):
                figures = out.get(self._revision(series))
                if figures is not None:
                    figures.error_logs += int(sum(self._number(p) for p in series.points))
        return out
