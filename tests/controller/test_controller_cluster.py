"""The controller against a real cluster: kube-apiserver, etcd, controller-manager, scheduler and KWOK nodes.

The API runs for real (uvicorn, Postgres); the controller runs in a thread of this process, fed by
Postgres LISTEN/NOTIFY and watches, exactly as ``dais controller`` runs it. Pods are driven through their
status as the kubelet would (KWOK makes them Ready; failures are written by the test).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.main import build_state, create_app
from controller import metrics
from controller.app import Controller
from controller.desired import TEMPLATE_HASH
from core.db.models import Endpoint, EndpointStatus, FeedEvent, ReplicaCount
from core.kube.client import Kube
from core.kube.labels import ENDPOINT_ID
from core.settings import ControllerSettings, LogsSettings
from tests.conftest import LiveServer, make_settings
from tests.factories import ADMIN_TOKEN, endpoint_body
from tests.fixtures.kube import KubeCluster, append_cri_log, wait_for
from tests.fixtures.victorialogs import LogCollector

NS = "admin"
WAIT = 30.0


def live_server_settings(home: Path) -> dict[str, Any]:
    """A catalog with one row asking for more GPUs than any node has (16 × A10G; nodes carry 8)."""
    raw = yaml.safe_load((Path(__file__).parents[2] / "core/domain/hardware.yaml").read_text())
    region = raw["vendors"][0]["regions"][0]
    a10g = next(t for t in region["instanceTypes"] if t["name"] == "nvidia-a10g")
    a10g["sizes"]["x16"] = 16
    a10g["quota"] = 64
    path = home / "hardware.yaml"
    path.write_text(yaml.safe_dump(raw))
    return {"hardware_catalog": path}


class Stack:
    def __init__(self, server: LiveServer, cluster: KubeCluster, controller: Controller, namespace: str) -> None:
        self.server = server
        self.cluster = cluster
        self.controller = controller
        self.namespace = namespace
        self.api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
        self.kube = Kube(cluster.api_client())

    def create(self, name: str, *, hardware: tuple[str, str, str] = ("cpu", "intel-spr", "x1"), **model: Any) -> str:
        body = endpoint_body(name)
        accelerator, instance_type, size = hardware
        body["compute"].update(accelerator=accelerator, instanceType=instance_type, instanceSize=size)
        body["model"].update(image={"tei": {}}, task="feature-extraction", **model)
        response = self.api.post(f"/v2/endpoint/{NS}", json=body)
        assert response.status_code == 200, response.text
        return self.endpoint_id(name)

    def endpoint_id(self, name: str) -> str:
        with self.server.sessions() as session:
            found = session.scalar(select(Endpoint.id).where(Endpoint.name == name, Endpoint.namespace == NS))
        assert found is not None
        return found

    def status(self, name: str) -> dict[str, Any]:
        response = self.api.get(f"/v2/endpoint/{NS}/{name}")
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()["status"]
        return status

    def wait_state(self, name: str, state: str, timeout: float = WAIT) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def reached() -> dict[str, Any] | None:
            nonlocal last
            last = self.status(name)
            return last if last["state"] == state else None

        try:
            return wait_for(reached, timeout=timeout, what=f"{name} to be {state}")
        except TimeoutError:
            raise AssertionError(f"{name} never became {state}; last status: {last}") from None

    def objects(self, kind: str, endpoint_id: str) -> list[dict[str, Any]]:
        items, _ = self.kube.list(kind, self.namespace, selector=f"{ENDPOINT_ID}={endpoint_id}")
        return items

    def only(self, kind: str, endpoint_id: str) -> dict[str, Any]:
        found = self.objects(kind, endpoint_id)
        assert len(found) == 1, f"{len(found)} {kind}s for {endpoint_id}"
        return found[0]

    def live_pods(self, endpoint_id: str) -> list[dict[str, Any]]:
        return [p for p in self.objects("Pod", endpoint_id) if not p["metadata"].get("deletionTimestamp")]

    def set_pod_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        """Writes a pod's status the way the kubelet does (the status subresource)."""
        name = pod["metadata"]["name"]
        path = f"/api/v1/namespaces/{self.namespace}/pods/{name}/status"
        self.kube._call(
            "PATCH",
            path,
            kind="Pod",
            verb="patch",
            body={"status": status},
            content_type="application/merge-patch+json",
        )

    def writes(self) -> float:
        total = sum(s.value for m in metrics.KUBE_WRITES.collect() for s in m.samples if s.name.endswith("_total"))
        return total + sum(
            s.value for m in metrics.STATUS_WRITES.collect() for s in m.samples if s.name.endswith("_total")
        )

    def settle(self) -> None:
        """Waits until the controller has nothing to do right now."""
        wait_for(self.controller.queue.idle, timeout=WAIT, what="the controller's queue to drain")


@pytest.fixture(scope="module")
def stack(live_server: LiveServer, kube_cluster: KubeCluster, request: pytest.FixtureRequest) -> Iterator[Stack]:
    worker = str(getattr(request.config, "workerinput", {}).get("workerid", "main"))
    namespace = f"dais-ctl-{worker}"
    settings = make_settings(
        live_server.settings.effective_database_url,
        live_server.settings.home,
        hardware_catalog=live_server.settings.hardware_catalog,
        gateway_url="https://gw.example.com",
        controller=ControllerSettings(
            kubeconfig=kube_cluster.kubeconfig,
            namespace=namespace,
            lease_name=f"dais-controller-{worker}",
            lease_seconds=6,
            renew_seconds=1,
            startup_deadline_seconds=600,
            image="dais:test",
        ),
    )
    controller = Controller(
        settings,
        sessions=live_server.sessions,
        secret_key=settings.secret_key.get_secret_value(),  # type: ignore[union-attr]
    )
    stop = threading.Event()
    thread = threading.Thread(target=controller.run, args=(stop,), daemon=True)
    thread.start()
    wait_for(controller.leading.is_set, timeout=WAIT, what="the controller to lead")
    built = Stack(live_server, kube_cluster, controller, namespace)
    yield built
    stop.set()
    thread.join(timeout=30)
    built.api.close()


def test_create_runs_on_a_fake_gpu_node_with_the_right_objects(stack: Stack) -> None:
    endpoint_id = stack.create(
        "gpu-one", hardware=("gpu", "nvidia-a10g", "x1"), env={"MODE": "fast"}, secrets={"API_KEY": "s3cret"}
    )
    status = stack.wait_state("gpu-one", "running")
    assert status["url"] == "https://gw.example.com/admin/gpu-one"
    assert (status["readyReplica"], status["targetReplica"]) == (1, 1)
    with stack.server.sessions() as session:  # where the gateway sends this endpoint's traffic
        row = session.get(EndpointStatus, endpoint_id)
        assert row is not None
        service = f"ep-gpu-one-{endpoint_id[:12]}"
        assert row.upstream == f"http://{service}.{stack.namespace}.svc:80"
        assert row.addresses is not None
        assert len(row.addresses) == 1
        assert row.addresses[0].endswith(":80")  # KWOK's pod IP, the engine's container port
        assert row.startup_seconds is not None

    deployment = stack.only("Deployment", endpoint_id)
    pod_spec = deployment["spec"]["template"]["spec"]
    engine = pod_spec["containers"][0]
    assert engine["image"] == "ghcr.io/huggingface/text-embeddings-inference:1.8.3"
    assert {"name": "MODE", "value": "fast"} in engine["env"]
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod_spec["initContainers"][0]["args"][:4] == ["model", "fetch", "--repo", "openai-community/gpt2"]
    assert pod_spec["nodeSelector"] == {"dais.dev/pool": "gpu", "dais.dev/gpu": "nvidia-a10g"}
    assert deployment["metadata"]["managedFields"][0]["manager"] == "dais-controller"
    secret = stack.only("Secret", endpoint_id)
    assert set(secret["data"]) == {"API_KEY"}
    service = stack.only("Service", endpoint_id)
    assert service["spec"]["selector"] == {ENDPOINT_ID: endpoint_id}
    for obj in (deployment, secret, service):
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "dais-controller"

    (pod,) = stack.live_pods(endpoint_id)
    node = pod["spec"]["nodeName"]
    assert stack.cluster.nodes[node].get("dais.dev/gpu") == "nvidia-a10g"
    assert pod["status"]["phase"] == "Running"
    (replica,) = stack.api.get(f"/v2/endpoint/{NS}/gpu-one/replica").json()["items"]
    assert (replica["id"], replica["host"], replica["state"]) == (pod["metadata"]["name"], node, "ready")


def test_a_second_pass_writes_nothing(stack: Stack) -> None:
    stack.create("steady")
    stack.wait_state("steady", "running")
    stack.settle()
    before = stack.writes()
    passes = metrics.RECONCILES.labels(result="success")._value.get()
    stack.controller.resync()
    wait_for(
        lambda: metrics.RECONCILES.labels(result="success")._value.get() > passes and stack.controller.queue.idle(),
        timeout=WAIT,
        what="a full resync",
    )
    assert stack.writes() == before


def test_changing_env_rolls_the_replicas_and_returns_to_running(stack: Stack) -> None:
    endpoint_id = stack.create("roll")
    stack.wait_state("roll", "running")
    (old_pod,) = stack.live_pods(endpoint_id)
    response = stack.api.put(f"/v2/endpoint/{NS}/roll", json={"model": {"env": {"MODE": "slow"}}})
    assert response.status_code == 200, response.text
    assert response.json()["status"]["state"] == "updating"  # shown at once, before the controller acts

    def rolled() -> dict[str, Any] | None:
        pods = stack.live_pods(endpoint_id)
        new = [p for p in pods if p["metadata"]["name"] != old_pod["metadata"]["name"]]
        return new[0] if len(pods) == 1 and new else None

    new_pod = wait_for(rolled, timeout=WAIT, what="the old replica to be replaced")
    assert new_pod["metadata"]["annotations"][TEMPLATE_HASH] != old_pod["metadata"]["annotations"][TEMPLATE_HASH]
    stack.wait_state("roll", "running")
    engine = stack.only("Deployment", endpoint_id)["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "MODE", "value": "slow"} in engine["env"]


def test_changing_only_replica_bounds_scales_in_place(stack: Stack) -> None:
    endpoint_id = stack.create("bounds")
    stack.wait_state("bounds", "running")
    (first,) = stack.live_pods(endpoint_id)
    response = stack.api.put(
        f"/v2/endpoint/{NS}/bounds", json={"compute": {"scaling": {"minReplica": 2, "maxReplica": 2}}}
    )
    assert response.status_code == 200, response.text
    wait_for(
        lambda: stack.status("bounds")["readyReplica"] == 2 and stack.status("bounds")["state"] == "running",
        timeout=WAIT,
        what="two ready replicas",
    )
    names = {p["metadata"]["name"] for p in stack.live_pods(endpoint_id)}
    assert first["metadata"]["name"] in names  # the first replica kept serving: no rollout
    assert stack.only("Deployment", endpoint_id)["spec"]["replicas"] == 2


def test_pause_then_resume(stack: Stack) -> None:
    endpoint_id = stack.create("pausable")
    stack.wait_state("pausable", "running")
    assert stack.api.post(f"/v2/endpoint/{NS}/pausable/pause").status_code == 200
    wait_for(
        lambda: stack.only("Deployment", endpoint_id)["spec"]["replicas"] == 0 and not stack.live_pods(endpoint_id),
        timeout=WAIT,
        what="the replicas to stop",
    )
    assert stack.wait_state("pausable", "paused")["targetReplica"] == 0
    with stack.server.sessions() as session:  # kept with no replica: the Retry-After of the next wake
        row = session.get(EndpointStatus, endpoint_id)
        assert row is not None
        assert row.startup_seconds is not None
    assert stack.api.post(f"/v2/endpoint/{NS}/pausable/resume").status_code == 200
    stack.wait_state("pausable", "running")
    assert stack.only("Deployment", endpoint_id)["spec"]["replicas"] == 1


def test_removing_every_secret_deletes_the_secret_object(stack: Stack) -> None:
    endpoint_id = stack.create("secretive", secrets={"K": "v"})
    stack.wait_state("secretive", "running")
    assert stack.only("Secret", endpoint_id)["data"] == {"K": "dg=="}
    response = stack.api.put(f"/v2/endpoint/{NS}/secretive", json={"model": {"secrets": {}}})
    assert response.status_code == 200, response.text
    wait_for(lambda: not stack.objects("Secret", endpoint_id), timeout=WAIT, what="the Secret to be deleted")
    stack.wait_state("secretive", "running")


def test_delete_leaves_nothing_behind(stack: Stack) -> None:
    endpoint_id = stack.create("doomed", secrets={"K": "v"})
    stack.wait_state("doomed", "running")
    assert stack.api.delete(f"/v2/endpoint/{NS}/doomed").status_code == 200

    def gone() -> bool:
        with stack.server.sessions() as session:
            row = session.get(Endpoint, endpoint_id)
        leftovers = [o for kind in ("Deployment", "Service", "Secret", "Pod") for o in stack.objects(kind, endpoint_id)]
        return row is None and not leftovers

    wait_for(gone, timeout=WAIT, what="the endpoint's objects and row to be gone")
    assert stack.api.get(f"/v2/endpoint/{NS}/doomed").status_code == 404
    with stack.server.sessions() as session:  # usage's history ends with a 0, the feed with the deletion
        counts = session.scalars(
            select(ReplicaCount.replicas).where(ReplicaCount.endpoint_id == endpoint_id).order_by(ReplicaCount.id)
        ).all()
        kinds = session.scalars(
            select(FeedEvent.kind).where(FeedEvent.endpoint_id == endpoint_id).order_by(FeedEvent.id)
        ).all()
    assert counts[0] == 1
    assert counts[-1] == 0
    assert kinds[0] == "status"
    assert kinds[-1] == "deleted"


def test_more_gpus_than_any_node_has_stays_pending_and_says_why(stack: Stack) -> None:
    stack.create("too-big", hardware=("gpu", "nvidia-a10g", "x16"))
    status = stack.wait_state("too-big", "pending")
    wait_for(
        lambda: "insufficient nvidia.com/gpu" in stack.status("too-big")["message"],
        timeout=WAIT,
        what="the unschedulable reason",
    )
    assert stack.status("too-big")["message"] == "waiting for 16× nvidia-a10g: insufficient nvidia.com/gpu"
    assert status.get("url") is None


def test_a_pod_that_cannot_pull_its_image_fails_the_endpoint(stack: Stack) -> None:
    endpoint_id = stack.create("bad-image")
    stack.wait_state("bad-image", "running")
    (pod,) = stack.live_pods(endpoint_id)
    engine = pod["spec"]["containers"][0]
    stack.set_pod_status(
        pod,
        {
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "False"}],
            "containerStatuses": [
                {
                    "name": "engine",
                    "image": engine["image"],
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "manifest unknown"}},
                }
            ],
        },
    )
    status = stack.wait_state("bad-image", "failed")
    assert status["message"].startswith(
        f"image {engine['image']} cannot be pulled (ImagePullBackOff: manifest unknown)"
    )


def test_a_crash_looping_engine_fails_with_its_reason(stack: Stack) -> None:
    endpoint_id = stack.create("oom")
    stack.wait_state("oom", "running")
    (pod,) = stack.live_pods(endpoint_id)
    stack.set_pod_status(
        pod,
        {
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [
                {
                    "name": "engine",
                    "image": pod["spec"]["containers"][0]["image"],
                    "imageID": "",
                    "ready": False,
                    "restartCount": 5,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
                    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                }
            ],
        },
    )
    status = stack.wait_state("oom", "failed")
    assert "ran out of memory (OOMKilled) on aws-us-east-1-intel-spr-x1" in status["message"]
    (replica,) = stack.api.get(f"/v2/endpoint/{NS}/oom/replica").json()["items"]
    assert (replica["state"], replica["restarts"]) == ("restarting", 5)
    assert replica["lastTermination"] == "OOMKilled (exit code 137)"

    # It comes back by itself (the kubelet's next restart holds): the audit log has both turns.
    stack.set_pod_status(
        pod,
        {
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "engine",
                    "image": pod["spec"]["containers"][0]["image"],
                    "imageID": "",
                    "ready": True,
                    "restartCount": 6,
                    "state": {"running": {"startedAt": "2026-11-29T12:00:00Z"}},
                    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                }
            ],
        },
    )
    stack.wait_state("oom", "running")
    events = stack.api.get(f"/v2/audit-logs/{NS}", params={"endpoint": "oom", "actor": "controller"}).json()
    assert [e["action"] for e in events["items"]] == ["recovered", "failed"]


def test_objects_without_a_row_are_removed(stack: Stack) -> None:
    """An orphan (e.g. left by a crash between an apply and a lost row) is found by label and deleted."""
    orphan_id = "f" * 32
    stack.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "ep-orphan-ffffffffffff",
                "namespace": stack.namespace,
                "labels": {"app.kubernetes.io/managed-by": "dais-controller", ENDPOINT_ID: orphan_id},
            },
        }
    )
    wait_for(lambda: not stack.objects("Secret", orphan_id), timeout=WAIT, what="the orphan to be deleted")


def test_logs_come_live_from_the_pods_and_from_the_log_store_for_gone_ones(
    stack: Stack, victorialogs: str, log_collector: LogCollector, tmp_path: Path
) -> None:
    """The API on the Kubernetes runtime: a running pod's lines through the API server (KWOK serves them from a
    file as a kubelet would), its previous run's too, and a gone pod's from VictoriaLogs; secrets masked."""
    current, previous = tmp_path / "engine.log", tmp_path / "engine-previous.log"
    stack.cluster.serve_logs(stack.namespace, current, container="engine", previous_logs_file=previous)
    endpoint_id = stack.create("logged", secrets={"API_KEY": "s3cr3t-value"})
    stack.wait_state("logged", "running")
    (pod,) = stack.live_pods(endpoint_id)
    pod_name = pod["metadata"]["name"]
    started = datetime.now(UTC)
    listening = started + timedelta(milliseconds=1)
    append_cri_log(current, "loading the model", at=started)
    append_cri_log(current, "listening with s3cr3t-value", at=listening)
    append_cri_log(previous, "the run before", at=started - timedelta(minutes=5))
    gone_at = started - timedelta(hours=1)
    log_collector.ship(
        endpoint_id=endpoint_id,
        pod="ep-logged-gone-1",
        namespace=stack.namespace,
        lines=[(gone_at, "stderr", "out of memory"), (gone_at + timedelta(seconds=1), "stdout", "bye")],
    )
    # The collector ships the running pod's lines too: shown once, with the stream only the store knows.
    log_collector.ship(
        endpoint_id=endpoint_id,
        pod=pod_name,
        namespace=stack.namespace,
        lines=[(listening, "stderr", "listening with s3cr3t-value")],
    )
    settings = make_settings(
        stack.server.settings.effective_database_url,
        stack.server.settings.home,
        controller=ControllerSettings(
            kubeconfig=stack.cluster.kubeconfig, namespace=stack.namespace, runtime="kubernetes"
        ),
        logs=LogsSettings(store_url=victorialogs),
    )
    app = create_app(settings, state=build_state(settings, sessions=stack.server.sessions))
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as api:

        def logs(**params: Any) -> dict[str, Any]:
            answer = api.get(f"/v2/endpoint/{NS}/logged/logs", params=params)
            assert answer.status_code == 200, answer.text
            found: dict[str, Any] = answer.json()
            return found

        found = logs()
        assert found["source"] == "kubernetes and the log store"
        assert {r["id"] for r in found["replicas"]} == {pod_name, "ep-logged-gone-1"}
        shown = [(x["replica"], x["line"]) for x in found["lines"]]
        assert shown == [
            ("ep-logged-gone-1", "out of memory"),
            ("ep-logged-gone-1", "bye"),
            (pod_name, "loading the model"),
            (pod_name, "listening with ********"),
        ]
        assert found["lines"][2]["stream"] == "engine"  # the kubelet merges stdout and stderr: the container
        assert found["lines"][3]["stream"] == "stderr"  # the store's copy of a line both hold
        assert [x["line"] for x in logs(replica="ep-logged-gone-1", search="memory")["lines"]] == ["out of memory"]
        assert [x["line"] for x in logs(tail=1)["lines"]] == ["listening with ********"]
        since = (started - timedelta(seconds=1)).isoformat()
        assert [x["replica"] for x in logs(since=since)["lines"]] == [pod_name, pod_name]
        unknown = api.get(f"/v2/endpoint/{NS}/logged/logs", params={"replica": "nope"})
        assert unknown.status_code == 400
        assert "replica" in unknown.json()["error"]

        # Following: the lines so far, then each new one the pod writes, as server-sent events.
        params = {"follow": "true", "tail": "1", "search": "request"}
        with api.stream("GET", f"/v2/endpoint/{NS}/logged/logs", params=params) as streamed:
            assert streamed.status_code == 200
            append_cri_log(current, "request served with s3cr3t-value")
            followed = []
            for line in streamed.iter_lines():
                if line.startswith("data: "):
                    followed.append(json.loads(line.removeprefix("data: ")))
                    break
        assert [(x["replica"], x["line"]) for x in followed] == [(pod_name, "request served with ********")]

        # A restart: the previous run's lines come too, before the current run's.
        engine_status = next(s for s in pod["status"]["containerStatuses"] if s["name"] == "engine")
        stack.set_pod_status(pod, {"containerStatuses": [{**engine_status, "restartCount": 1}]})
        wait_for(
            lambda: any(x["line"] == "the run before" for x in logs()["lines"]) or None,
            timeout=WAIT,
            what="the previous run's lines",
        )
    stack.api.delete(f"/v2/endpoint/{NS}/logged")
