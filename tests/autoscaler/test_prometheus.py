"""Hardware use from a real Prometheus scraping cAdvisor-like and DCGM-like series, through to decisions in the
database: one query per signal per tick, whatever the number of endpoints."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from autoscaler.app import policy_config
from autoscaler.sources import EndpointPod, HardwareUse, Signals
from autoscaler.tick import Ticker
from core.db.models import Endpoint, EndpointScaling, EndpointStatus, ScalingDecision
from core.prometheus import PrometheusClient
from core.settings import AutoscalerSettings
from tests.factories import endpoint_body
from tests.fixtures.kube import wait_for
from tests.fixtures.prometheus import LoadExporter

NAMESPACE = "dais-endpoints"
SETTINGS = AutoscalerSettings(utilization_window_seconds=5)


def create(client: TestClient, db: sessionmaker[Session], name: str, *, gpu: bool, ready: int) -> str:
    body = endpoint_body(name)
    if not gpu:
        body["compute"].update(accelerator="cpu", instanceType="intel-spr", instanceSize="x2")
    body["compute"]["scaling"] = {"minReplica": 1, "maxReplica": 6}
    response = client.post("/v2/endpoint/admin", json=body)
    assert response.status_code == 200, response.text
    with db() as session, session.begin():
        endpoint = session.scalars(select(Endpoint).where(Endpoint.name == name)).one()
        now = datetime.now(UTC)
        session.merge(
            EndpointStatus(
                endpoint_id=endpoint.id,
                state="running",
                ready_replica=ready,
                target_replica=ready,
                conditions=[],
                updated_at=now,
            )
        )
        return endpoint.id


def pod(name: str, endpoint_id: str, suffix: str) -> str:
    """A pod name as the Deployment's ReplicaSet makes it (controller/desired.py object_name + hashes)."""
    return f"ep-{name}-{endpoint_id[:12]}-7d9f8c6b5-{suffix}"


def ticker(db: sessionmaker[Session], prometheus: PrometheusClient, pods: dict[str, EndpointPod]) -> Ticker:
    """``pods``: name → endpoint id, as ``pods_by_label`` reads them on a cluster."""
    source = Signals(HardwareUse(prometheus, SETTINGS, NAMESPACE, pods=lambda: pods))
    return Ticker(sessions=db, source=source, config=policy_config(SETTINGS), clock=lambda: datetime.now(UTC))


def scraped(prometheus: str, query: str, count: int) -> bool:
    result = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}).json()["data"]["result"]
    return len(result) >= count


def test_hardware_use_from_prometheus_drives_decisions(
    client: TestClient,
    db: sessionmaker[Session],
    prometheus: str,
    load_exporter: LoadExporter,
) -> None:
    cpu = create(client, db, "busy-cpu", gpu=False, ready=2)
    gpu = create(client, db, "busy-gpu", gpu=True, ready=1)
    quiet = create(client, db, "no-series", gpu=False, ready=1)
    cpu_pods = [pod("busy-cpu", cpu, "a1b2c"), pod("busy-cpu", cpu, "d3e4f")]
    for name in cpu_pods:
        load_exporter.set(name, namespace=NAMESPACE, cpu_percent=90, limit_cores=2)
    gpu_pod = pod("busy-gpu", gpu, "x9y8z")
    load_exporter.set(gpu_pod, namespace=NAMESPACE, cpu_percent=5, limit_cores=8, gpu_percent=97)
    # Another namespace's pod with the same name pattern must not be counted.
    load_exporter.set(pod("busy-cpu", cpu, "zzzzz"), namespace="elsewhere", cpu_percent=1)
    try:
        # rate() over a window the series does not yet fill reads low: wait until each series is older than it.
        series = f'container_cpu_usage_seconds_total{{namespace="{NAMESPACE}",container="engine"}}'
        full = f"count_over_time({series}[10s]) >= 7"
        wait_for(lambda: scraped(prometheus, full, 3), timeout=30, what="Prometheus to hold 7 s of every pod's series")
        client_prometheus = PrometheusClient(prometheus, timeout=5)
        owners = {name: EndpointPod(cpu) for name in cpu_pods} | {gpu_pod: EndpointPod(gpu)}
        made = dict(ticker(db, client_prometheus, owners).tick())
    finally:
        for name in (*cpu_pods, gpu_pod, pod("busy-cpu", cpu, "zzzzz")):
            load_exporter.remove(name)

    assert client_prometheus.queries == 2  # one per signal (CPU, GPU) for all three endpoints
    assert 85 <= made[cpu].inputs["utilization"] <= 95  # the fetch container's series is not counted
    assert made[cpu].replicas == 3  # ceil(2 × 90 / 80)
    assert made[gpu].inputs["utilization"] == 97
    assert made[gpu].replicas == 2
    assert made[quiet].replicas == 1
    assert made[quiet].inputs["missing"] == ["utilization"]
    assert made[quiet].reason == "holding at 1: no hardware use % data; missing metrics never scale down"
    with db() as session:
        stored = {d.endpoint_id: d for d in session.scalars(select(ScalingDecision))}
    assert stored[cpu].final == 3
    assert stored[cpu].reason.startswith("hardware use % ")
    assert stored[gpu].inputs["utilization"] == 97


def test_an_unreachable_prometheus_is_missing_data_not_a_scale_down(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    endpoint = create(client, db, "far-away", gpu=False, ready=3)
    with db() as session, session.begin():
        session.add(
            EndpointScaling(endpoint_id=endpoint, replicas=3, state={}, reason="", updated_at=datetime.now(UTC))
        )
    unreachable = PrometheusClient("http://127.0.0.1:9", timeout=1)  # the discard port: connection refused
    made = dict(ticker(db, unreachable, {}).tick())
    assert made[endpoint].inputs["missing"] == ["utilization"]
    assert made[endpoint].replicas == 3
    assert made[endpoint].reason == (
        "holding at 3: no hardware use % data (Prometheus unreachable: [Errno 111] Connection refused); "
        "missing metrics never scale down"
    )
