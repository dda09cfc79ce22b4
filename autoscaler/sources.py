"""Where the autoscaler reads load: Prometheus for hardware use, the gateway's activity rows for requests.

Each tick costs a constant number of queries however many endpoints there are: one PromQL query per signal
(CPU from cAdvisor, GPU from the DCGM exporter) over the endpoints' namespace, and one SELECT of every
activity row. Prometheus answers per pod; a pod belongs to the endpoint its ``dais.dev/endpoint-id`` label
names, read with one labelled LIST of the namespace's pods per tick (``pods_by_label``), so neither a
kube-state-metrics join nor the shape of a pod's name is relied on. An endpoint without a series is missing
data, recorded in its decision; a failed query or pod list makes the whole signal missing for that tick
(missing data never scales down).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from string import Template

from sqlalchemy import select
from sqlalchemy.orm import Session

from autoscaler.policy import Samples
from core.db.models import EndpointActivity
from core.kube.client import Kube, KubeError
from core.kube.labels import ENDPOINT_ID
from core.prometheus import PrometheusClient, PrometheusError
from core.settings import AutoscalerSettings

log = logging.getLogger("dais.autoscaler.sources")


@dataclass(frozen=True, slots=True)
class ScaleTarget:
    """What the sources need to know to sample one endpoint."""

    id: str
    ready: int
    starting: int
    gpu: bool = False


class HardwareUse:
    """Mean percent use over the window per endpoint, averaged across its pods: CPU or GPU by its hardware."""

    def __init__(
        self,
        prometheus: PrometheusClient,
        settings: AutoscalerSettings,
        namespace: str,
        *,
        pods: Callable[[], Mapping[str, str]],
    ) -> None:
        """``pods()``: the namespace's pods now, name → endpoint id (``pods_by_label`` on a cluster)."""
        self._prometheus = prometheus
        self._pods = pods
        self._settings = settings
        values = {"namespace": namespace, "window": f"{round(settings.utilization_window_seconds)}s"}
        self._queries = {
            False: Template(settings.cpu_query).substitute(values),
            True: Template(settings.gpu_query).substitute(values),
        }

    def percent(self, targets: Sequence[ScaleTarget]) -> dict[str, float]:
        by_id = {target.id: target for target in targets}
        try:
            owners = self._pods()
        except KubeError as exc:
            log.warning("hardware use missing this tick: cannot list the endpoints' pods: %s", exc)
            return {}
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
                target = by_id.get(owners.get(labels.get(self._settings.pod_label, ""), ""))
                if target is not None and target.gpu == gpu and value == value:  # NaN: no limit or no samples
                    per_pod[target.id].append(value)
            found.update({endpoint_id: sum(values) / len(values) for endpoint_id, values in per_pod.items()})
        return found


def pods_by_label(kube: Kube, namespace: str) -> dict[str, str]:
    """Every endpoint pod of ``namespace``, name → endpoint id, by their ``dais.dev/endpoint-id`` label."""
    pods, _ = kube.list("Pod", namespace, selector=ENDPOINT_ID)
    return {pod["metadata"]["name"]: pod["metadata"]["labels"][ENDPOINT_ID] for pod in pods}


@dataclass
class Signals:
    """The autoscaler's one source: hardware use (when Prometheus is configured) and gateway activity."""

    hardware: HardwareUse | None

    def samples(self, session: Session, targets: Sequence[ScaleTarget], now: datetime) -> Mapping[str, Samples]:
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
