"""The whole loop on a real cluster: gateway activity → autoscaler (leader by Lease) → desired count → controller
→ Deployment replicas, from 1 to N under sustained load and back after the stabilization window. The windows
are shortened through settings; nothing sleeps."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from autoscaler.app import Autoscaler
from autoscaler.sources import pods_by_label
from controller.app import Controller
from core.db.models import Endpoint, EndpointActivity, EndpointScaling
from core.kube.client import Kube
from core.kube.labels import ENDPOINT_ID
from core.settings import AutoscalerSettings, ControllerSettings, PrometheusSettings
from tests.conftest import LiveServer, make_settings
from tests.factories import ADMIN_TOKEN, endpoint_body
from tests.fixtures import scrape
from tests.fixtures.kube import KubeCluster, die_with_parent, wait_for
from tests.fixtures.postgres import free_port
from tests.fixtures.prometheus import LoadExporter

NS = "admin"
WAIT = 60.0
STABILIZATION_S = 4.0
WINDOW_S = 5  # hardware use is averaged over this (Prometheus scrapes every second)


class Loop:
    def __init__(self, server: LiveServer, kube: Kube, namespace: str) -> None:
        self.server = server
        self.kube = kube
        self.namespace = namespace
        self.api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)

    def deployment_replicas(self, endpoint_id: str) -> tuple[int, int]:
        """(spec.replicas, status.readyReplicas) of the endpoint's Deployment."""
        items, _ = self.kube.list("Deployment", self.namespace, selector=f"{ENDPOINT_ID}={endpoint_id}")
        if len(items) != 1:
            return (-1, -1)
        return items[0]["spec"]["replicas"], items[0].get("status", {}).get("readyReplicas", 0)

    def wait_replicas(self, endpoint_id: str, count: int) -> None:
        wait_for(
            lambda: self.deployment_replicas(endpoint_id) == (count, count),
            timeout=WAIT,
            what=f"the Deployment to run {count} ready replica(s)",
        )

    def create(self, name: str, scaling: dict[str, Any] | None = None) -> str:
        """A CPU endpoint admin/{name} on TEI; returns its id once its Deployment runs one Ready replica."""
        body = endpoint_body(name)
        body["compute"].update(accelerator="cpu", instanceType="intel-spr", instanceSize="x1")
        if scaling is not None:
            body["compute"]["scaling"] = scaling
        body["model"].update(image={"tei": {}}, task="feature-extraction")
        assert self.api.post(f"/v2/endpoint/{NS}", json=body).status_code == 200
        with self.server.sessions() as session:
            endpoint_id: str = session.scalars(select(Endpoint.id).where(Endpoint.name == name)).one()
        self.wait_replicas(endpoint_id, 1)
        return endpoint_id

    def load(self, endpoint_id: str, pending: float) -> None:
        """What the gateway writes: requests in flight now and their mean over the last 20 s."""
        now = datetime.now(UTC)
        with self.server.sessions.begin() as session:
            session.merge(
                EndpointActivity(
                    endpoint_id=endpoint_id,
                    gateway="test",
                    last_request_at=now,
                    in_flight=round(pending),
                    pending_mean=pending,
                    updated_at=now,
                )
            )


@pytest.fixture(scope="module")
def loop(
    live_server: LiveServer, kube_cluster: KubeCluster, prometheus: str, request: pytest.FixtureRequest
) -> Iterator[Loop]:
    worker = str(getattr(request.config, "workerinput", {}).get("workerid", "main"))
    namespace = f"dais-scale-{worker}"
    settings = make_settings(
        live_server.settings.effective_database_url,
        live_server.settings.home,
        controller=ControllerSettings(
            kubeconfig=kube_cluster.kubeconfig,
            namespace=namespace,
            lease_name=f"dais-controller-{worker}",
            lease_seconds=6,
            renew_seconds=1,
            image="dais:test",
        ),
        prometheus=PrometheusSettings(url=prometheus, timeout_seconds=5),
        autoscaler=AutoscalerSettings(
            utilization_window_seconds=WINDOW_S,
            tick_seconds=0.5,
            up_interval_seconds=1,
            down_interval_seconds=1,
            stabilization_seconds=STABILIZATION_S,
            lease_name=f"dais-autoscaler-{worker}",
            lease_seconds=6,
            renew_seconds=1,
        ),
    )
    controller = Controller(
        settings,
        sessions=live_server.sessions,
        secret_key=settings.secret_key.get_secret_value(),  # type: ignore[union-attr]
    )
    autoscaler = Autoscaler(settings, sessions=live_server.sessions)
    stop = threading.Event()
    threads = [
        threading.Thread(target=controller.run, args=(stop,), daemon=True),
        threading.Thread(target=autoscaler.run, args=(stop,), daemon=True),
    ]
    for thread in threads:
        thread.start()
    wait_for(controller.leading.is_set, timeout=WAIT, what="the controller to lead")
    wait_for(autoscaler.leading.is_set, timeout=WAIT, what="the autoscaler to lead")
    built = Loop(live_server, Kube(kube_cluster.api_client()), namespace)
    lease = built.kube.get("Lease", namespace, f"dais-autoscaler-{worker}")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == autoscaler.identity
    yield built
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    built.api.close()


def test_sustained_load_scales_a_deployment_up_and_back_after_the_window(loop: Loop) -> None:
    endpoint_id = loop.create("under-load", {"minReplica": 1, "maxReplica": 4, "measure": {"pendingRequests": 1.5}})

    loop.load(endpoint_id, pending=6.0)  # 6 per replica against 1.5: ceil(1 × 6 / 1.5) = 4
    loop.wait_replicas(endpoint_id, 4)
    loop.load(endpoint_id, pending=0.5)  # 0.125 per replica: one is plenty
    loop.wait_replicas(endpoint_id, 1)

    view: dict[str, Any] = loop.api.get(f"/v2/endpoint/{NS}/under-load/scaling").json()
    changes = [d for d in reversed(view["decisions"]) if d["previous"] != d["final"]]
    assert [(d["previous"], d["final"]) for d in changes] == [(1, 4), (4, 1)]
    assert changes[0]["reason"] == "pending requests per replica 6.0 above 1.5 on 1 replicas: up to 4"
    assert changes[1]["reason"].startswith("pending requests per replica 0.1 below 1.5: down to 1")
    up, down = (datetime.fromisoformat(d["time"].replace("Z", "+00:00")) for d in changes)
    # The 4 recommended at the scale-up held the count for the whole stabilization window.
    assert (down - up).total_seconds() >= STABILIZATION_S
    assert view["desiredReplicas"] == 1


def test_dais_autoscaler_leads_serves_metrics_and_hands_the_lease_over_on_exit(
    loop: Loop, kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    port = free_port()
    lease = "dais-autoscaler-process"
    env = {
        **os.environ,
        "DAIS_DATABASE_URL": loop.server.settings.effective_database_url,
        "DAIS_LOG_JSON": "false",
        "DAIS_CONTROLLER__KUBECONFIG": str(kube_cluster.kubeconfig),
        "DAIS_CONTROLLER__NAMESPACE": loop.namespace,
        "DAIS_AUTOSCALER__LEASE_NAME": lease,
        "DAIS_AUTOSCALER__LISTEN": f"127.0.0.1:{port}",
        "DAIS_AUTOSCALER__TICK_SECONDS": "0.5",
    }
    log = (tmp_path / "autoscaler.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "dais", "autoscaler"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent(os.getpid()),
    )
    try:

        def metric(name: str, **labels: str) -> float | None:
            assert process.poll() is None, (tmp_path / "autoscaler.log").read_text()
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            except httpx.TransportError:
                return None
            return scrape.value(text, name, **labels)

        wait_for(lambda: metric("dais_autoscaler_leader") == 1, timeout=WAIT, what="the autoscaler to lead")
        wait_for(
            lambda: (metric("dais_autoscaler_ticks_total", result="success") or 0) >= 2,
            timeout=WAIT,
            what="two successful ticks",
        )
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        held = loop.kube.get("Lease", loop.namespace, lease)
        assert held is not None
        assert held["spec"]["holderIdentity"]
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    assert process.returncode == 0, (tmp_path / "autoscaler.log").read_text()
    released = loop.kube.get("Lease", loop.namespace, lease)
    assert released is not None
    assert released["spec"].get("holderIdentity") is None  # a standby may take over at once


def test_hardware_use_finds_an_endpoints_pods_by_label_not_by_name(loop: Loop) -> None:
    endpoint_id = loop.create("labelled")
    # A pod named like one of the endpoint's replicas, but without its label, is somebody else's.
    impostor = f"ep-labelled-{endpoint_id[:12]}-7d9f8c6b5-zzzzz"
    loop.kube.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": impostor, "namespace": loop.namespace},
            "spec": {"containers": [{"name": "engine", "image": "busybox"}]},
        }
    )
    try:
        owners = pods_by_label(loop.kube, loop.namespace)
    finally:
        loop.kube.delete("Pod", loop.namespace, impostor)
    mine = [pod for pod, owner in owners.items() if owner.endpoint_id == endpoint_id]
    assert len(mine) == 1
    assert impostor not in owners
    assert owners[mine[0]].ready_at is not None  # Ready, and since when: a younger use window mixes capacities
    pod = loop.kube.get("Pod", loop.namespace, mine[0])
    assert pod is not None
    assert pod["metadata"]["labels"][ENDPOINT_ID] == endpoint_id


def test_a_saturated_endpoint_asks_for_the_count_its_requests_need_in_one_decision(
    loop: Loop, load_exporter: LoadExporter
) -> None:
    endpoint_id = loop.create("saturated", {"minReplica": 1, "maxReplica": 8, "measure": {"hardwareUsage": 80}})
    (pod,) = [
        name for name, owner in pods_by_label(loop.kube, loop.namespace).items() if owner.endpoint_id == endpoint_id
    ]

    def carry() -> float | None:
        with loop.server.sessions() as session:
            scaling = session.get(EndpointScaling, endpoint_id)
            return scaling.state.get("carry") if scaling is not None else None

    try:
        # A calm stretch: 60 % busy with 0.6 requests in flight teaches what one replica carries (1.0 at 100 %).
        load_exporter.set(pod, namespace=loop.namespace, cpu_percent=60)
        loop.load(endpoint_id, pending=0.6)
        learned = wait_for(carry, timeout=WAIT, what="the autoscaler to learn what one replica carries")
        assert 0.9 <= learned <= 1.1
        # Requests pile up first (a replica that is not busy is no demand), then the replica saturates.
        loop.load(endpoint_id, pending=4.6)
        load_exporter.set(pod, namespace=loop.namespace, cpu_percent=100)

        def desired() -> int | None:
            view = loop.api.get(f"/v2/endpoint/{NS}/saturated/scaling").json()
            return view["desiredReplicas"] if view["desiredReplicas"] != 1 else None

        assert wait_for(desired, timeout=WAIT, what="a scale-up decision") == 6  # ceil(4.6 / 0.8)
    finally:
        load_exporter.remove(pod)
    view: dict[str, Any] = loop.api.get(f"/v2/endpoint/{NS}/saturated/scaling").json()
    changes = [d for d in reversed(view["decisions"]) if d["previous"] != d["final"]]
    assert [(d["previous"], d["final"]) for d in changes] == [(1, 6)]
    assert re.fullmatch(
        r"hardware use \d+ % \((saturated|above 80)\); 4\.6 requests in flight at ~0\.\d\d per replica at 80 % → 6",
        changes[0]["reason"],
    ), changes[0]["reason"]
