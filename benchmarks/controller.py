"""Controller latency, catch-up and resync cost against a real kube-apiserver.

Run from the repository root: ``.venv/bin/python benchmarks/controller.py`` (needs the PostgreSQL server
binaries, ``make system-deps``, and Go for the first build of the cluster's binaries, ``make k8s``).

It starts a throw-away PostgreSQL, the test cluster of tests/fixtures/kube.py (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, KWOK with fake nodes; pods really get scheduled and become
Ready), ``dais api`` and ``dais controller`` as processes, then measures:

a. create latency: 200 sequential ``POST /v2/endpoint`` calls; for each, the time from sending the request
   to a watch on Deployments seeing that endpoint's Deployment (p50, p99);
b. catch-up: with the controller stopped, 1,000 endpoints are created; then it starts and we time until
   every one has its Deployment (``all_applied_s``) and until every one is running (``all_running_s``);
   the anchor, the time the same creates take through the API alone, is printed beside it;
c. resync: with everything converged, ``kill -HUP`` makes the controller re-check all 1,200 endpoints; we
   count its Kubernetes and status writes (from its /metrics) and the CPU seconds its process used.

Stdout: one JSON object; progress on stderr. Everything started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import psycopg  # noqa: E402
import yaml  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from kubernetes import client as k8s  # noqa: E402

import migrations  # noqa: E402
from core.kube.client import Kube  # noqa: E402
from core.kube.labels import ENDPOINT_ID, SELECTOR  # noqa: E402
from tests.factories import add_standard_models, endpoint_body  # noqa: E402
from tests.fixtures import scrape  # noqa: E402
from tests.fixtures.hub import HubServer  # noqa: E402
from tests.fixtures.kube import KubeCluster, assets_dir, fake_node, wait_for  # noqa: E402
from tests.fixtures.postgres import create_database, free_port, postgres_server  # noqa: E402

ADMIN_TOKEN = "dais_bench_admin_token_0123456789abcdef"
NAMESPACE = "dais-bench"
STARTED = time.monotonic()
GOALS = {"create_p50_ms": 100, "create_p99_ms": 500, "all_applied_s": 60, "resync_cpu_s": 5.0, "resync_writes": 0}


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def process(args: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("wb") as out:
        popen = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield popen
        finally:
            if popen.poll() is None:
                popen.terminate()
                try:
                    popen.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    popen.kill()


def cpu_by_process() -> dict[str, float]:
    """CPU seconds of every process this benchmark started (descendants), by command name."""
    parents: dict[int, int] = {}
    stats: dict[int, tuple[str, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
        stats[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    ours, frontier = set(), {os.getpid()}
    while frontier:
        ours |= frontier
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - ours
    totals: dict[str, float] = {}
    for pid in ours - {os.getpid()}:
        name, seconds = stats[pid]
        if name.startswith("python"):
            name = "dais " + Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[3].decode()
        totals[name] = totals.get(name, 0.0) + seconds
    return totals


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        k: round(v - before.get(k, 0.0), 1)
        for k, v in sorted(after.items(), key=lambda kv: -kv[1])
        if v - before.get(k, 0.0) >= 0.1
    }


class Metrics:
    def __init__(self, url: str) -> None:
        self.url = url

    def read(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for sample in scrape.samples(httpx.get(self.url, timeout=5).text):
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        return totals


class DeploymentWatch:
    """Records when each endpoint's Deployment is first seen, from a watch (the way the test sees it)."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.seen: dict[str, float] = {}
        self.cond = threading.Condition()
        self.stop = threading.Event()
        _, version = kube.list("Deployment", NAMESPACE, selector=SELECTOR)
        self.thread = threading.Thread(target=self._run, args=(version,), daemon=True)
        self.thread.start()

    def _run(self, version: str) -> None:
        while not self.stop.is_set():
            try:
                for kind, obj in self.kube.watch(
                    "Deployment", NAMESPACE, selector=SELECTOR, resource_version=version, timeout_seconds=60
                ):
                    version = obj["metadata"]["resourceVersion"]
                    if kind == "ADDED":
                        with self.cond:
                            self.seen.setdefault(obj["metadata"]["labels"][ENDPOINT_ID], time.perf_counter())
                            self.cond.notify_all()
            except Exception:  # the cluster stopping under us at the end, or a cut stream: watch again
                if self.stop.is_set():
                    return

    def wait(self, endpoint_id: str, timeout: float) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: endpoint_id in self.seen, timeout=timeout):
                raise TimeoutError(f"no Deployment for {endpoint_id} within {timeout}s")
            return self.seen[endpoint_id]

    def count(self) -> int:
        with self.cond:
            return len(self.seen)


def body(name: str) -> dict[str, Any]:
    created = endpoint_body(name)
    created["compute"].update(accelerator="cpu", instanceType="intel-spr", instanceSize="x1")
    created["model"].update(image={"tei": {}}, task="feature-extraction")
    return created


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--creates", type=int, default=200, help="sequential creates timed in (a)")
    parser.add_argument("--backlog", type=int, default=1000, help="endpoints created while the controller is down")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dais-bench-controller-"))
    with ExitStack() as stack:
        log("starting PostgreSQL and the Kubernetes test cluster")
        server = stack.enter_context(postgres_server())
        database = create_database(server, "dais_bench_controller")
        migrations.upgrade(database)
        db = stack.enter_context(psycopg.connect(database, autocommit=True))
        cluster = stack.enter_context(KubeCluster(assets_dir(), name="bench"))
        hub = stack.enter_context(HubServer())  # creates resolve their model on the (local) Hub
        add_standard_models(hub)
        kube = Kube(cluster.api_client())
        # Room for every replica: 1,200 one-CPU pods on top of the fixture's nodes.
        with cluster.api_client() as client:
            for i in range(6):
                k8s.CoreV1Api(client).create_node(fake_node(f"bench-cpu-{i}", {"dais.dev/pool": "cpu"}))

        # The default catalog allows 32 CPU "accelerators" per namespace; the benchmark needs 1,200.
        catalog = yaml.safe_load((REPO / "core/domain/hardware.yaml").read_text())
        for vendor in catalog["vendors"]:
            for region in vendor["regions"]:
                for instance_type in region["instanceTypes"]:
                    instance_type["quota"] = 100_000
        (work / "hardware.yaml").write_text(yaml.safe_dump(catalog))
        api_port, metrics_port = free_port(), free_port()
        env = {
            **os.environ,
            "DAIS_DATABASE_URL": database,
            "DAIS_SECRET_KEY": Fernet.generate_key().decode(),
            "DAIS_ADMIN_TOKEN": ADMIN_TOKEN,
            "DAIS_LOG_JSON": "false",
            "DAIS_LOG_LEVEL": "WARNING",
            "DAIS_ACCESS_LOG": "false",
            "DAIS_CONTROLLER__KUBECONFIG": str(cluster.kubeconfig),
            "DAIS_CONTROLLER__NAMESPACE": NAMESPACE,
            "DAIS_CONTROLLER__LISTEN": f"127.0.0.1:{metrics_port}",
            "DAIS_CONTROLLER__IMAGE": "dais:bench",
            "DAIS_HARDWARE_CATALOG": str(work / "hardware.yaml"),
            "DAIS_HUB__URL": hub.url,
        }
        stack.enter_context(
            process([sys.executable, "-m", "dais", "api", "--port", str(api_port)], env, work / "api.log")
        )
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{api_port}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
        )
        wait_for(lambda: _ready(api), timeout=60, what="dais api")
        metrics = Metrics(f"http://127.0.0.1:{metrics_port}/metrics")

        def start_controller(name: str) -> subprocess.Popen[bytes]:
            popen = stack.enter_context(process([sys.executable, "-m", "dais", "controller"], env, work / name))
            wait_for(lambda: _up(metrics), timeout=60, what="dais controller")
            wait_for(lambda: metrics.read().get("dais_controller_leader") == 1, timeout=60, what="the lease")
            return popen

        # (a) create → Deployment, one at a time.
        controller = start_controller("controller-1.log")
        watch = DeploymentWatch(kube)
        log(f"(a) {args.creates} sequential creates")
        latencies = []
        for i in range(args.creates):
            sent = time.perf_counter()
            response = api.post("/v2/endpoint/admin", json=body(f"lat-{i:04d}"))
            response.raise_for_status()
            endpoint_id = _endpoint_id(db, f"lat-{i:04d}")
            latencies.append((watch.wait(endpoint_id, timeout=30) - sent) * 1000)
        controller.send_signal(signal.SIGTERM)
        controller.wait(timeout=60)

        # (b) a backlog created while the controller is down.
        log(f"(b) {args.backlog} creates with the controller down")
        began = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            for result in pool.map(
                lambda i: api.post("/v2/endpoint/admin", json=body(f"bl-{i:04d}")), range(args.backlog)
            ):
                result.raise_for_status()
        api_only_s = time.perf_counter() - began
        total = args.creates + args.backlog
        log("(b) starting the controller")
        started = time.perf_counter()
        cpu_before_backlog = cpu_by_process()
        controller = start_controller("controller-2.log")
        wait_for(lambda: watch.count() >= total, timeout=600, what="every Deployment", interval=0.05)
        all_applied_s = time.perf_counter() - started
        backlog_cpu = cpu_delta(cpu_before_backlog, cpu_by_process())
        log(f"(b) all applied in {all_applied_s:.1f}s; waiting for every endpoint to run")
        wait_for(lambda: _running(db) >= total, timeout=900, what="every endpoint running", interval=0.5)
        all_running_s = time.perf_counter() - started

        # (c) a full resync of converged endpoints.
        wait_for(lambda: _quiet(metrics), timeout=120, what="the controller to settle")
        before, cpu_before = metrics.read(), cpu_seconds(controller.pid)
        log(f"(c) resync of {total} unchanged endpoints")
        resync_began = time.perf_counter()
        controller.send_signal(signal.SIGHUP)
        wait_for(
            lambda: (
                metrics.read()["dais_controller_reconciles_total"] - before["dais_controller_reconciles_total"] >= total
                and _quiet(metrics)
            ),
            timeout=300,
            what="the resync to finish",
            interval=0.05,
        )
        resync_s = time.perf_counter() - resync_began
        after, cpu_after = metrics.read(), cpu_seconds(controller.pid)
        watch.stop.set()

    figures = {
        "create_to_deployment_p50_ms": round(statistics.median(latencies), 1),
        "create_to_deployment_p99_ms": round(percentile(latencies, 0.99), 1),
        "create_to_deployment_max_ms": round(max(latencies), 1),
        "creates_timed": len(latencies),
        "backlog_endpoints": args.backlog,
        "backlog_all_applied_s": round(all_applied_s, 2),
        "backlog_all_running_s": round(all_running_s, 2),
        "backlog_creates_through_api_only_s": round(api_only_s, 2),
        "backlog_applied_vs_api_ratio": round(all_applied_s / api_only_s, 2),
        "backlog_cpu_s_by_process": backlog_cpu,
        "resync_endpoints": total,
        "resync_kube_writes": after["dais_controller_kube_writes_total"]
        - before.get("dais_controller_kube_writes_total", 0),
        "resync_status_writes": after["dais_controller_status_writes_total"]
        - before.get("dais_controller_status_writes_total", 0),
        "resync_cpu_s": round(cpu_after - cpu_before, 2),
        "resync_wall_s": round(resync_s, 2),
    }
    figures["goals_met"] = {
        "create_p50_le_100_ms": figures["create_to_deployment_p50_ms"] <= GOALS["create_p50_ms"],
        "create_p99_le_500_ms": figures["create_to_deployment_p99_ms"] <= GOALS["create_p99_ms"],
        "backlog_le_60_s": figures["backlog_all_applied_s"] <= GOALS["all_applied_s"],
        "resync_0_writes": figures["resync_kube_writes"] == 0,
        "resync_le_5_cpu_s": figures["resync_cpu_s"] <= GOALS["resync_cpu_s"],
    }
    print(json.dumps(figures, indent=2))
    return 0


def _ready(api: httpx.Client) -> bool:
    try:
        return api.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


def _up(metrics: Metrics) -> bool:
    try:
        metrics.read()
    except httpx.TransportError:
        return False
    return True


def _quiet(metrics: Metrics) -> bool:
    return metrics.read().get("dais_controller_queue_depth", 1) == 0


def _endpoint_id(db: psycopg.Connection[Any], name: str) -> str:
    row = db.execute("SELECT id FROM endpoints WHERE name = %s AND deleted_at IS NULL", (name,)).fetchone()
    assert row is not None, name
    return str(row[0])


def _running(db: psycopg.Connection[Any]) -> int:
    row = db.execute("SELECT count(*) FROM endpoint_status WHERE state = 'running'").fetchone()
    return int(row[0]) if row else 0


if __name__ == "__main__":
    sys.exit(main())
