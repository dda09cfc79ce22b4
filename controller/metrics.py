"""The controller's Prometheus metrics (module constants, bounded labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("dais_controller_reconciles_total", "Reconcile passes by result.", ["result"])
RECONCILE_SECONDS = Histogram(
    "dais_controller_reconcile_duration_seconds",
    "Time of one reconcile pass by result.",
    ["result"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
QUEUE_DEPTH = Gauge("dais_controller_queue_depth", "Endpoints waiting in the work queue (ready now).")
KUBE_REQUESTS = Counter(
    "dais_controller_kube_requests_total",
    "Kubernetes API calls by verb, kind and status code.",
    ["verb", "kind", "code"],
)
KUBE_WRITES = Counter(
    "dais_controller_kube_writes_total", "Kubernetes writes (apply, delete) by kind.", ["verb", "kind"]
)
STATUS_WRITES = Counter("dais_controller_status_writes_total", "Endpoint status rows written.")
LEADER = Gauge("dais_controller_leader", "1 while this process holds the controller lease.")


def observe_kube(verb: str, kind: str, code: int) -> None:
    KUBE_REQUESTS.labels(verb=verb, kind=kind, code=str(code)).inc()
