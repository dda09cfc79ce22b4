"""Where the autoscaler reads load: Prometheus for hardware use, the gateway's activity rows for requests.

Each tick costs a constant number of queries however many endpoints there are: one PromQL query per signal
(CPU from cAdvisor, GPU from the DCGM exporter) over the endpoints' namespace, and one SELECT of every
activity row. Prometheus answers per pod; a pod belongs to the endpoint its ``dais.dev/endpoint-id`` label
names, read with one labelled LIST of the namespace's pods per tick (``pods_by_label``), so neither a
kube-state-metrics join nor the shape of a pod's name is relied on. An endpoint without a series is missing
data, recorded in its decision; a failed query or pod list makes the whole signal missing for that tick, and
the decision says why (missing data never scales down). On the local runtime there is no Prometheus: each
engine says how busy its request slots are (``LocalUse``), one scrape per Ready replica per tick.

What goes over the network (Prometheus, the pod list, the engines' scrapes) is ``measure``, called with no
transaction open; ``samples`` adds the gateway's activity rows inside the tick's transaction.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from string import Template
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
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
    addresses: tuple[str, ...] = ()  # its Ready replicas' host:port (the local runtime's engines)


@dataclass(frozen=True, slots=True)
class Measured:
    """Hardware use per endpoint id: mean percent over the window; seconds since its newest Ready pod turned
    Ready; and why it is missing, for an endpoint whose signal failed this tick."""

    use: Mapping[str, float] = field(default_factory=dict)
    ready_for: Mapping[str, float] = field(default_factory=dict)
    missing: Mapping[str, str] = field(default_factory=dict)

    def without(self, ids: set[str]) -> Measured:
        """Nothing for ``ids`` (endpoints that changed hardware since they were measured)."""
        return Measured(
            {k: v for k, v in self.use.items() if k not in ids},
            {k: v for k, v in self.ready_for.items() if k not in ids},
            {k: v for k, v in self.missing.items() if k not in ids},
        )


@dataclass(frozen=True, slots=True)
class EndpointPod:
    endpoint_id: str
    ready_at: datetime | None = None  # when its Ready condition last turned True; None while not Ready


class HardwareUse:
    """Mean percent use over the window per endpoint, averaged across its pods: CPU or GPU by its hardware; and
    how long ago the endpoint's newest Ready pod turned Ready (a window younger than that mixes capacities)."""

    def __init__(
        self,
        prometheus: PrometheusClient,
        settings: AutoscalerSettings,
        namespace: str,
        *,
        pods: Callable[[], Mapping[str, EndpointPod]],
    ) -> None:
        """``pods()``: the namespace's endpoint pods now, by name (``pods_by_label`` on a cluster)."""
        self._prometheus = prometheus
        self._pods = pods
        self._settings = settings
        values = {"namespace": namespace, "window": f"{round(settings.utilization_window_seconds)}s"}
        self._queries = {
            False: Template(settings.cpu_query).substitute(values),
            True: Template(settings.gpu_query).substitute(values),
        }

    def measure(self, targets: Sequence[ScaleTarget], now: datetime) -> Measured:
        by_id = {target.id: target for target in targets}
        try:
            owners = self._pods()
        except KubeError as exc:
            log.warning("hardware use missing this tick: cannot list the endpoints' pods: %s", exc)
            return Measured(missing=dict.fromkeys(by_id, f"cannot list the endpoints' pods: {exc}"))
        newest: dict[str, datetime] = {}
        for pod in owners.values():
            if pod.ready_at is not None and (pod.endpoint_id not in newest or pod.ready_at > newest[pod.endpoint_id]):
                newest[pod.endpoint_id] = pod.ready_at
        ready_for = {endpoint_id: max(0.0, (now - at).total_seconds()) for endpoint_id, at in newest.items()}
        found: dict[str, float] = {}
        missing: dict[str, str] = {}
        for gpu, query in self._queries.items():
            if not any(target.gpu == gpu for target in targets):
                continue
            try:
                series = self._prometheus.vector(query)
            except PrometheusError as exc:
                log.warning("%s use missing this tick: %s", "GPU" if gpu else "CPU", exc)
                missing.update(dict.fromkeys((t.id for t in targets if t.gpu == gpu), _why(exc)))
                continue
            per_pod: dict[str, list[float]] = defaultdict(list)
            for labels, value in series:
                owner = owners.get(labels.get(self._settings.pod_label, ""))
                target = by_id.get(owner.endpoint_id) if owner is not None else None
                if target is not None and target.gpu == gpu and value == value:  # NaN: no limit or no samples
                    per_pod[target.id].append(value)
            found.update({endpoint_id: sum(values) / len(values) for endpoint_id, values in per_pod.items()})
        return Measured(found, ready_for, missing)


def _why(exc: PrometheusError) -> str:
    """What a decision says of a failed query: the same words every tick while the failure lasts."""
    cause = exc.__cause__
    if isinstance(cause, httpx.TimeoutException):
        return f"Prometheus did not answer in time ({type(cause).__name__})"
    if isinstance(cause, httpx.TransportError):
        return f"Prometheus unreachable: {cause or type(cause).__name__}"
    return f"Prometheus failed: {exc}"


class LocalUse:
    """Hardware use on the local runtime, where no Prometheus watches the replicas: how busy each engine's
    request slots were over the window, from its ``/metrics`` (``llm_slot_busy_seconds_total`` over
    ``llm_slots``), read once per tick, averaged across the endpoint's Ready replicas.

    Each replica is judged over its own samples only: a replica Ready for less than the window has a shorter one,
    so windows never mix capacities and no replica's readiness time is needed. A replica seen once has no rate
    yet; an endpoint with none is missing data (which never scales down)."""

    def __init__(self, window_s: float, *, timeout_s: float = 1.0, monotonic: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self.monotonic = monotonic
        self._http = httpx.Client(timeout=timeout_s)
        self._seen: dict[str, deque[tuple[float, float]]] = {}  # address → (when, busy slot-seconds / slots)

    def measure(self, targets: Sequence[ScaleTarget], now: datetime) -> Measured:
        found: dict[str, float] = {}
        live: set[str] = set()
        for target in targets:
            uses = [u for u in (self._use(address) for address in target.addresses) if u is not None]
            live.update(target.addresses)
            if uses:
                found[target.id] = sum(uses) / len(uses)
        for gone in set(self._seen) - live:
            del self._seen[gone]
        return Measured(found)

    def _use(self, address: str) -> float | None:
        try:
            text = self._http.get(f"http://{address}/metrics").text
            figures = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
            busy, slots = figures["llm_slot_busy_seconds_total"], figures["llm_slots"]
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            log.debug("no use from %s: %s", address, exc)
            return None
        now = self.monotonic()
        samples = self._seen.setdefault(address, deque())
        if samples and busy / slots < samples[-1][1]:
            samples.clear()  # a restarted engine counts from zero again
        samples.append((now, busy / slots))
        while len(samples) > 2 and now - samples[1][0] >= self.window_s:
            samples.popleft()
        if len(samples) < 2 or now - samples[0][0] <= 0:
            return None
        (then, before), (_, after) = samples[0], samples[-1]
        return max(0.0, min(100.0, 100 * (after - before) / (now - then)))


def pods_by_label(kube: Kube, namespace: str) -> dict[str, EndpointPod]:
    """Every endpoint pod of ``namespace`` by name, found by its ``dais.dev/endpoint-id`` label."""
    pods, _ = kube.list("Pod", namespace, selector=ENDPOINT_ID)
    return {
        pod["metadata"]["name"]: EndpointPod(pod["metadata"]["labels"][ENDPOINT_ID], _ready_at(pod)) for pod in pods
    }


def _ready_at(pod: dict[str, Any]) -> datetime | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            since = condition.get("lastTransitionTime")
            return datetime.fromisoformat(since.replace("Z", "+00:00")) if since else None
    return None


@dataclass
class Signals:
    """The autoscaler's one source: hardware use (when Prometheus is configured) and gateway activity."""

    hardware: HardwareUse | LocalUse | None

    def measure(self, targets: Sequence[ScaleTarget], now: datetime) -> Measured:
        """Hardware use: network I/O, so never called inside a transaction."""
        return self.hardware.measure(targets, now) if self.hardware is not None else Measured()

    def samples(
        self, session: Session, targets: Sequence[ScaleTarget], measured: Measured, now: datetime
    ) -> Mapping[str, Samples]:
        """``measured`` with the gateway's activity rows, read in the tick's transaction."""
        activity = gateway_activity(session.scalars(select(EndpointActivity)), now=now)
        sampled = {}
        for target in targets:
            # No row: no gateway saw a request for it, so none is in flight.
            traffic = activity.get(target.id) or Traffic()
            sampled[target.id] = Samples(
                ready=target.ready,
                starting=target.starting,
                utilization=measured.use.get(target.id),
                pending_per_replica=traffic.pending / target.ready if target.ready else traffic.pending,
                in_flight=traffic.in_flight,
                last_request=traffic.last_request,
                ready_for_s=measured.ready_for.get(target.id),
                missing_why=measured.missing.get(target.id),
                arrival_rps=traffic.arrival_rps,
                completion_rps=traffic.completion_rps,
            )
        return sampled


# A gateway replica writes its rows at least every few seconds while it has traffic; rows older than this
# are a gone replica's: its requests are no longer in flight, but its last request time still counts.
ACTIVITY_STALE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Traffic:
    """One endpoint's gateway figures, summed over the gateway replicas."""

    last_request: datetime | None = None
    in_flight: int = 0
    pending: float = 0.0  # mean requests in flight over the pending window
    arrival_rps: float = 0.0
    completion_rps: float = 0.0


def gateway_activity(rows: Iterable[EndpointActivity], *, now: datetime) -> dict[str, Traffic]:
    """Per endpoint, over all gateway replicas: the latest request, and the sums of the fresh rows' figures."""
    summed: dict[str, Traffic] = {}
    for row in rows:
        seen = summed.get(row.endpoint_id) or Traffic()
        last = seen.last_request
        if row.last_request_at is not None and (last is None or row.last_request_at > last):
            last = row.last_request_at
        if (now - row.updated_at).total_seconds() <= ACTIVITY_STALE_SECONDS:
            seen = Traffic(
                last,
                seen.in_flight + row.in_flight,
                seen.pending + row.pending_mean,
                seen.arrival_rps + row.arrival_rps,
                seen.completion_rps + row.completion_rps,
            )
        summed[row.endpoint_id] = replace(seen, last_request=last)
    return summed
