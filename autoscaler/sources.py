"""Where the autoscaler reads load: Prometheus for hardware use, the gateway's activity rows for requests.

Each tick costs a constant number of queries however many endpoints there are: one PromQL query per signal
(CPU from cAdvisor, GPU from the DCGM exporter) over the endpoints' namespace, and one SELECT of every
activity row. Prometheus answers per pod; a pod belongs to the endpoint whose id prefix its name carries
(``ep-{name}-{id[:12]}-{replicaset}-{suffix}``, controller/desired.py), so no kube-state-metrics join is
needed. An endpoint without a series is missing data, recorded in its decision; a failed query makes the
whole signal missing for that tick (missing data never scales down).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from string import Template

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from autoscaler.policy import Samples
from core.db.models import EndpointActivity
from core.settings import AutoscalerSettings

log = logging.getLogger("dais.autoscaler.sources")

_POD_NAME = re.compile(r"^ep-.+-([0-9a-f]{12})-[a-z0-9]+-[a-z0-9]+$")


@dataclass(frozen=True, slots=True)
class Target:
    """What the sources need to know to sample one endpoint."""

    id: str
    ready: int
    starting: int
    gpu: bool = False


class PrometheusError(Exception):
    pass


class Prometheus:
    """Instant queries over the HTTP API (``/api/v1/query``)."""

    def __init__(self, url: str, *, timeout: float, transport: httpx.BaseTransport | None = None) -> None:
        self._client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, transport=transport)
        self.queries = 0  # sent, for the benchmark and the tests

    def vector(self, query: str) -> list[tuple[dict[str, str], float]]:
        """An instant query at Prometheus's own now (so clock skew with this host cannot empty the window)."""
        self.queries += 1
        try:
            response = self._client.get("/api/v1/query", params={"query": query})
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusError(f"Prometheus query failed: {exc}") from exc
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"Prometheus {response.status_code}: {body.get('error') or response.text[:200]}")
        data = body["data"]
        if data["resultType"] != "vector":
            raise PrometheusError(f"expected an instant vector, got {data['resultType']}: {query}")
        return [(series["metric"], float(series["value"][1])) for series in data["result"]]

    def close(self) -> None:
        self._client.close()


class HardwareUse:
    """Mean percent use over the window per endpoint, averaged across its pods: CPU or GPU by its hardware."""

    def __init__(self, prometheus: Prometheus, settings: AutoscalerSettings, namespace: str) -> None:
        self._prometheus = prometheus
        self._settings = settings
        values = {"namespace": namespace, "window": f"{round(settings.utilization_window_seconds)}s"}
        self._queries = {
            False: Template(settings.cpu_query).substitute(values),
            True: Template(settings.gpu_query).substitute(values),
        }

    def percent(self, targets: Sequence[Target]) -> dict[str, float]:
        by_prefix = {target.id[:12]: target for target in targets}
        found: dict[str, float] = {}
        for gpu, query in self._queries.items():
            if not any(target.gpu == gpu for target in targets):
                continue
            try:
                series = self._prometheus.vector(query)
            except PrometheusError as exc:
                log.warning("%s use missing this tick: %s", "GPU" if gpu else "CPU", exc)
                continue
            per_pod: dict[str, list[float]] = defaultdict(list)
            for labels, value in series:
                match = _POD_NAME.match(labels.get(self._settings.pod_label, ""))
                target = by_prefix.get(match.group(1)) if match else None
                if target is not None and target.gpu == gpu and value == value:  # NaN: no limit or no samples
                    per_pod[target.id].append(value)
            found.update({endpoint_id: sum(values) / len(values) for endpoint_id, values in per_pod.items()})
        return found


@dataclass
class Signals:
    """The autoscaler's one source: hardware use (when Prometheus is configured) and gateway activity."""

    hardware: HardwareUse | None

    def samples(self, session: Session, targets: Sequence[Target], now: datetime) -> Mapping[str, Samples]:
        use = self.hardware.percent(targets) if self.hardware is not None else {}
        activity = gateway_activity(session.scalars(select(EndpointActivity)), now=now)
        sampled = {}
        for target in targets:
            # No row: no gateway saw a request for it, so none is in flight.
            last_request, in_flight, pending = activity.get(target.id, (None, 0, 0.0))
            sampled[target.id] = Samples(
                ready=target.ready,
                starting=target.starting,
                utilization=use.get(target.id),
                pending_per_replica=pending / target.ready if target.ready else pending,
                in_flight=in_flight,
                last_request=last_request,
            )
        return sampled


# A gateway replica writes its rows at least every few seconds while it has traffic; rows older than this
# are a gone replica's: its requests are no longer in flight, but its last request time still counts.
ACTIVITY_STALE_SECONDS = 60.0


def gateway_activity(
    rows: Iterable[EndpointActivity], *, now: datetime
) -> dict[str, tuple[datetime | None, int, float]]:
    """Per endpoint, over all gateway replicas: latest request, requests in flight, mean pending."""
    summed: dict[str, tuple[datetime | None, int, float]] = {}
    for row in rows:
        last, in_flight, pending = summed.get(row.endpoint_id, (None, 0, 0.0))
        if row.last_request_at is not None and (last is None or row.last_request_at > last):
            last = row.last_request_at
        if (now - row.updated_at).total_seconds() <= ACTIVITY_STALE_SECONDS:
            in_flight += row.in_flight
            pending += row.pending_mean
        summed[row.endpoint_id] = (last, in_flight, pending)
    return summed
