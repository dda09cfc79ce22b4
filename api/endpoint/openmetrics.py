"""``GET /v2/endpoint/{ns}/{name}/open-metrics``: one endpoint's gateway figures as OpenMetrics text.

The figures live in the gateway (``llm_*`` and ``dais_gateway_*`` series labelled ``endpoint="ns/name"``).
With a Prometheus configured (``DAIS_PROMETHEUS__URL``, the one the autoscaler reads), they are
queried there and summed over gateway replicas; without one, they are read from this process's own registry,
which holds them when the gateway runs in the same process (``dais serve``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from api.errors import ServiceUnavailable
from core.prometheus import PrometheusClient, PrometheusError
from core.settings import PrometheusSettings

CONTENT_TYPE = CONTENT_TYPE_LATEST
FAMILIES = (
    "llm_requests",
    "llm_failures",
    "llm_internal_request_duration_ms",
    "llm_prompt_tokens",
    "llm_completion_tokens",
    "dais_gateway_pending",
    "dais_gateway_held",
    "dais_gateway_cold_starts",
)
_PER_REPLICA = frozenset({"instance", "job", "pod", "namespace", "container", "service"})


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def render(families: list[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    text: bytes = generate_latest(registry)  # type: ignore[no-untyped-call]
    return text


def from_registry(label: str) -> list[Metric]:
    """This process's figures for one endpoint (the embedded gateway's)."""
    found = []
    for family in REGISTRY.collect():
        if family.name not in FAMILIES:
            continue
        kept = Metric(family.name, family.documentation, family.type, family.unit)
        kept.samples = [s for s in family.samples if s.labels.get("endpoint") == label]
        if kept.samples:
            found.append(kept)
    return found


def from_prometheus(url: str, label: str, *, timeout: float) -> list[Metric]:
    """The figures summed over gateway replicas, as Prometheus last scraped them."""
    names = "|".join(f"{f}(_total|_bucket|_count|_sum)?" for f in FAMILIES)
    query = f'{{__name__=~"{names}", endpoint="{label}"}}'
    try:
        with PrometheusClient(url, timeout=timeout) as prometheus:
            series = prometheus.vector(query)
    except PrometheusError as exc:
        raise ServiceUnavailable(f"Prometheus at {url} did not answer ({exc}): retry, or check the server") from None
    summed: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
    for metric, value in series:
        labels = {k: v for k, v in metric.items() if k not in _PER_REPLICA}
        name = labels.pop("__name__")
        summed[(name, tuple(sorted(labels.items())))] += value
    return list(_families(summed))


def _families(summed: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> Iterator[Metric]:
    for family in FAMILIES:
        kind = _kind(family)
        metric = Metric(family, f"{family}, summed over gateway replicas", kind)
        for (name, labels), value in sorted(summed.items()):
            if _family_of(name) == family:
                metric.add_sample(name, dict(labels), value)
        if metric.samples:
            yield metric


def _kind(family: str) -> str:
    if family.endswith("duration_ms"):
        return "histogram"
    return "gauge" if family in ("dais_gateway_pending", "dais_gateway_held") else "counter"


def _family_of(name: str) -> str:
    for suffix in ("_total", "_bucket", "_count", "_sum"):
        if name.endswith(suffix) and name[: -len(suffix)] in FAMILIES:
            return name[: -len(suffix)]
    return name


def figures(settings: PrometheusSettings, label: str) -> bytes:
    if settings.url:
        return render(from_prometheus(settings.url, label, timeout=settings.timeout_seconds))
    return render(from_registry(label))
