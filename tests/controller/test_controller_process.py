"""`dais controller` as real processes: killed mid-reconcile, leader election, /metrics and /healthz, and the
controller embedded in `dais serve` (SQLite, in-process notifications)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
from sqlalchemy import select

from core.db.models import Endpoint
from core.kube.client import Kube
from core.kube.labels import ENDPOINT_ID, SELECTOR
from tests.conftest import SECRET_KEY, LiveServer
from tests.factories import ADMIN_TOKEN, endpoint_body
from tests.fixtures import scrape
from tests.fixtures.hub import HubServer
from tests.fixtures.kube import KubeCluster, die_with_parent, wait_for
from tests.fixtures.postgres import free_port

DAIS = [sys.executable, "-m", "dais"]
NS = "admin"
LEASE_SECONDS = 4
WAIT = 60.0


@dataclass
class ControllerProcess:
    popen: subprocess.Popen[bytes]
    url: str
    log: Path
    log_file: IO[bytes]

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(self.url + path, timeout=2)
        except httpx.TransportError:
            return None

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels include ``labels``."""
        response = self.get("/metrics")
        assert response is not None, self.tail()
        return scrape.value(response.text, name, **labels) or 0.0

    @property
    def identity(self) -> str:
        return f"{os.uname().nodename}-{self.popen.pid}"

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)
            self.popen.wait(timeout=30)
        self.log_file.close()


class Harness:
    def __init__(self, server: LiveServer, cluster: KubeCluster, namespace: str, workdir: Path) -> None:
        self.server = server
        self.cluster = cluster
        self.namespace = namespace
        self.workdir = workdir
        self.api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
        self.kube = Kube(cluster.api_client())
        self.processes: list[ControllerProcess] = []

    def start_controller(self) -> ControllerProcess:
        return self._start("controller", {"DAIS_CONTROLLER__IMAGE": "dais:test"})

    def start_autoscaler(self) -> ControllerProcess:
        return self._start("autoscaler", {"DAIS_AUTOSCALER__TICK_SECONDS": "0.5"})

    def _start(self, component: str, settings: dict[str, str]) -> ControllerProcess:
        port = free_port()
        section = f"DAIS_{component.upper()}__"
        env = {
            **os.environ,
            "DAIS_DATABASE_URL": self.server.settings.effective_database_url,
            "DAIS_SECRET_KEY": SECRET_KEY,
            "DAIS_LOG_JSON": "false",
            "DAIS_CONTROLLER__KUBECONFIG": str(self.cluster.kubeconfig),
            "DAIS_CONTROLLER__NAMESPACE": self.namespace,
            f"{section}LEASE_NAME": f"dais-{component}",
            f"{section}LEASE_SECONDS": str(LEASE_SECONDS),
            f"{section}RENEW_SECONDS": "0.5",
            f"{section}LISTEN": f"127.0.0.1:{port}",
            **settings,
        }
        log = self.workdir / f"{component}-{len(self.processes)}.log"
        log_file = log.open("wb")
        popen = subprocess.Popen(
            [*DAIS, component],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(os.getpid()),
        )
        process = ControllerProcess(popen, f"http://127.0.0.1:{port}", log, log_file)
        self.processes.append(process)
        wait_for(
            lambda: popen.poll() is not None or ((r := process.get("/healthz")) is not None and r.status_code == 200),
            timeout=WAIT,
            what=f"the {component}'s /healthz",
        )
        assert popen.poll() is None, process.tail()
        return process

    def create(self, name: str, **model: Any) -> None:
        body = endpoint_body(name)
        body["compute"].update(accelerator="cpu", instanceType="intel-spr", instanceSize="x1")
        body["model"].update(image={"tei": {}}, task="feature-extraction", **model)
        response = self.api.post(f"/v2/endpoint/{NS}", json=body)
        assert response.status_code == 200, response.text

    def holder(self, component: str = "controller") -> str | None:
        lease = self.kube.get("Lease", self.namespace, f"dais-{component}")
        return (lease or {}).get("spec", {}).get("holderIdentity")

    def live_ids(self) -> set[str]:
        with self.server.sessions() as session:
            return set(session.scalars(select(Endpoint.id).where(Endpoint.deleted_at.is_(None))))

    def ids(self) -> dict[str, str]:
        """Live endpoints' ids by name."""
        with self.server.sessions() as session:
            rows = session.execute(select(Endpoint.name, Endpoint.id).where(Endpoint.deleted_at.is_(None)))
            return {name: endpoint_id for name, endpoint_id in rows}

    def all_ids(self) -> set[str]:
        with self.server.sessions() as session:
            return set(session.scalars(select(Endpoint.id)))

    def owned(self) -> dict[str, list[str]]:
        """Our objects in the namespace by endpoint id, as ``Kind/name``."""
        found: dict[str, list[str]] = {}
        for kind in ("Deployment", "Service", "Secret"):
            items, _ = self.kube.list(kind, self.namespace, selector=SELECTOR)
            for item in items:
                found.setdefault(item["metadata"]["labels"][ENDPOINT_ID], []).append(kind)
        return found

    def states(self) -> dict[str, str]:
        return {e["name"]: e["status"]["state"] for e in self.api.get(f"/v2/endpoint/{NS}").json()["items"]}


def test_killed_mid_reconcile_then_restarted_converges_with_no_orphans(harness: Harness) -> None:
    names = [f"crash-{i}" for i in range(24)]
    with_secrets = set(names[::2])
    for name in names:  # created while no controller runs
        harness.create(name, secrets={"KEY": "v"} if name in with_secrets else {})
    first = harness.start_controller()
    wait_for(lambda: harness.owned(), timeout=WAIT, what="the first objects to be applied")
    first.stop(signal.SIGKILL)  # mid-way: some endpoints have all, some part, some none of their objects
    for name in names[:6]:  # deleted while no controller runs, whatever they have in the cluster
        assert harness.api.delete(f"/v2/endpoint/{NS}/{name}").status_code == 200

    second = harness.start_controller()

    def converged() -> bool:
        owned = harness.owned()
        live = harness.live_ids()
        expected = {
            endpoint_id: ["Deployment", "Secret", "Service"] if name in with_secrets else ["Deployment", "Service"]
            for name, endpoint_id in harness.ids().items()
        }
        return (
            harness.all_ids() == live  # deleted rows finalized
            and {k: sorted(v) for k, v in owned.items()} == expected  # nothing for deleted or unknown ids
            and set(harness.states().values()) == {"running"}
        )

    wait_for(converged, timeout=WAIT, what="convergence after the restart")
    assert sorted(harness.states()) == sorted(names[6:])
    assert harness.holder() == second.identity


def test_a_standby_takes_over_when_the_leader_dies_without_double_writes(harness: Harness) -> None:
    leader = harness.start_controller()
    wait_for(lambda: harness.holder() == leader.identity, timeout=WAIT, what="the first controller to lead")
    standby = harness.start_controller()
    harness.create("before")
    wait_for(lambda: harness.states().get("before") == "running", timeout=WAIT, what="'before' to run")
    assert standby.metric("dais_controller_leader") == 0
    assert standby.metric("dais_controller_kube_writes_total") == 0  # a standby never writes
    assert standby.metric("dais_controller_status_writes_total") == 0
    assert leader.metric("dais_controller_reconciles_total") > 0
    assert leader.metric("dais_controller_kube_requests_total", verb="apply", kind="Deployment") >= 1

    leader.stop(signal.SIGKILL)
    harness.create("after")  # arrives while nobody leads: picked up once the standby takes over
    wait_for(lambda: harness.holder() == standby.identity, timeout=LEASE_SECONDS * 5, what="the standby to lead")
    wait_for(lambda: harness.states().get("after") == "running", timeout=WAIT, what="'after' to run")
    assert standby.metric("dais_controller_leader") == 1


def test_a_leader_stopped_cleanly_hands_over_its_lease(harness: Harness) -> None:
    leader = harness.start_controller()
    wait_for(lambda: harness.holder() == leader.identity, timeout=WAIT, what="the first controller to lead")
    standby = harness.start_controller()
    leader.stop(signal.SIGTERM)
    assert leader.popen.returncode == 0
    assert harness.holder() in (None, standby.identity)  # released on the way out
    wait_for(lambda: harness.holder() == standby.identity, timeout=LEASE_SECONDS * 5, what="the standby to lead")


def test_serve_runs_the_controller_and_autoscaler_on_sqlite(
    kube_cluster: KubeCluster, hub_server: HubServer, tmp_path: Path
) -> None:
    port, gateway_port, internal_port = free_port(), free_port(), free_port()
    namespace = "dais-serve"
    env = {
        **os.environ,
        "DAIS_HOME": str(tmp_path / "home"),
        "DAIS_ADMIN_TOKEN": ADMIN_TOKEN,
        "DAIS_LOG_JSON": "false",
        "DAIS_CONTROLLER__KUBECONFIG": str(kube_cluster.kubeconfig),
        "DAIS_CONTROLLER__NAMESPACE": namespace,
        "DAIS_HUB__URL": hub_server.url,
        "DAIS_AUTOSCALER__TICK_SECONDS": "0.5",
        "DAIS_GATEWAY__LISTEN": f"127.0.0.1:{gateway_port}",
        "DAIS_GATEWAY__INTERNAL_LISTEN": f"127.0.0.1:{internal_port}",
        "DAIS_GATEWAY__CONNECT_TIMEOUT_SECONDS": "1",
    }
    env.pop("DAIS_DATABASE_URL", None)
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [*DAIS, "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent(os.getpid()),
    )
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    try:

        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                return api.get("/readyz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, timeout=WAIT, what="dais serve to be ready")
        body: dict[str, Any] = endpoint_body("local")
        body["compute"].update(accelerator="cpu", instanceType="intel-spr", instanceSize="x1")
        body["model"].update(image={"tei": {}}, task="feature-extraction")
        assert api.post(f"/v2/endpoint/{NS}", json=body).status_code == 200
        wait_for(
            lambda: api.get(f"/v2/endpoint/{NS}/local").json()["status"]["state"] == "running",
            timeout=WAIT,
            what="the endpoint to run under dais serve",
        )
        # The embedded gateway follows status writes on the in-process bus: the url routes to the replica
        # (KWOK's pod addresses lead nowhere real, so the answer itself says nothing; its metrics do).
        url = api.get(f"/v2/endpoint/{NS}/local").json()["status"]["url"]
        assert url == f"http://127.0.0.1:{gateway_port}/{NS}/local"

        def forwarded() -> bool:
            httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
            figures = httpx.get(f"http://127.0.0.1:{internal_port}/metrics").text
            return any(
                s.name in ("llm_requests_total", "llm_failures_total") and s.labels.get("endpoint") == f"{NS}/local"
                for s in scrape.samples(figures)
            )

        wait_for(forwarded, timeout=WAIT, what="the embedded gateway to forward to the endpoint")
        wait_for(
            lambda: api.get(f"/v2/endpoint/{NS}/local/scaling").json()["desiredReplicas"] == 1,
            timeout=WAIT,
            what="the embedded autoscaler to evaluate the endpoint",
        )
        assert api.delete(f"/v2/endpoint/{NS}/local").status_code == 200
        kube = Kube(kube_cluster.api_client())
        wait_for(
            lambda: not kube.list("Deployment", namespace, selector=SELECTOR)[0],
            timeout=WAIT,
            what="the Deployment to be deleted",
        )
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        api.close()
