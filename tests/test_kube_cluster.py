"""The test cluster harness itself: real apiserver, KCM, scheduler, and kwok-driven fake CPU and GPU nodes."""

from __future__ import annotations

import datetime as dt
import queue
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.fixtures.kube import (
    GPU_RESOURCE,
    KubeCluster,
    append_cri_log,
    cri_timestamp,
    gpu_node_selectors,
    is_ready,
    versions,
    wait_for,
)

TIMEOUT = 60.0
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


@pytest.fixture
def api(kube_cluster: KubeCluster) -> Iterator[k8s.ApiClient]:
    with kube_cluster.api_client() as api:
        yield api


def _create_namespace(core: k8s.CoreV1Api) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture
def namespace(api: k8s.ApiClient) -> Iterator[str]:
    core = k8s.CoreV1Api(api)
    name = _create_namespace(core)
    yield name
    core.delete_namespace(name)


def _pod(name: str, selector: dict[str, str], gpus: int = 0) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "example.invalid/x:1"}
    spec: dict[str, Any] = {"nodeSelector": selector, "containers": [container]}
    if gpus:
        container["resources"] = {"limits": {GPU_RESOURCE: str(gpus)}}
        spec["tolerations"] = [GPU_TOLERATION]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_version_is_the_pinned_one(api: k8s.ApiClient) -> None:
    assert k8s.VersionApi(api).get_code().git_version == versions()["KUBERNETES_VERSION"]


def test_deployment_gets_running_ready_pods(api: k8s.ApiClient, namespace: str, kube_cluster: KubeCluster) -> None:
    labels = {"app": "web"}
    template = _pod("unused", {"dais.dev/pool": "cpu"})
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": template["spec"]},
        },
    }
    apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment)

    def running_pods() -> list[k8s.V1Pod]:
        pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
        running = [p for p in pods if p.status.phase == "Running" and is_ready(p)]
        return running if len(running) == 2 else []

    pods = wait_for(running_pods, timeout=TIMEOUT, what="2 Running and Ready pods")
    assert {p.spec.node_name for p in pods} <= {"cpu-0", "cpu-1"}
    wait_for(
        lambda: apps.read_namespaced_deployment_status("web", namespace).status.available_replicas == 2,
        timeout=TIMEOUT,
        what="availableReplicas=2",
    )


def test_gpu_pod_lands_on_its_gpu_node(api: k8s.ApiClient, namespace: str, kube_cluster: KubeCluster) -> None:
    selector = next(s for s in gpu_node_selectors() if s.get("dais.dev/gpu") == "nvidia-a10g")
    core = k8s.CoreV1Api(api)
    core.create_namespaced_pod(namespace, _pod("gpu", selector, gpus=1))

    pod = wait_for(
        lambda: (p := core.read_namespaced_pod("gpu", namespace)).status.phase == "Running" and p,
        timeout=TIMEOUT,
        what="the GPU pod to run",
    )
    assert pod.spec.node_name == kube_cluster.gpu_node_for(selector)


def test_pod_wanting_more_gpus_than_any_node_stays_pending(api: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api)
    core.create_namespaced_pod(namespace, _pod("greedy", {"dais.dev/pool": "gpu"}, gpus=9))

    def unschedulable() -> k8s.V1PodCondition | None:
        conditions = core.read_namespaced_pod("greedy", namespace).status.conditions or []
        return next((c for c in conditions if c.type == "PodScheduled" and c.status == "False"), None)

    condition = wait_for(unschedulable, timeout=TIMEOUT, what="PodScheduled=False")
    assert f"Insufficient {GPU_RESOURCE}" in condition.message
    assert core.read_namespaced_pod("greedy", namespace).status.phase == "Pending"


def test_namespace_deletion_completes(api: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(api)
    name = _create_namespace(core)
    core.create_namespaced_config_map(name, {"metadata": {"name": "c"}, "data": {"k": "v"}})
    pod = _pod("p", {"dais.dev/pool": "cpu"})
    # The namespace controller requeues by the pods' grace period: the default 30 s would add 5 s here.
    pod["spec"]["terminationGracePeriodSeconds"] = 0
    core.create_namespaced_pod(name, pod)
    wait_for(lambda: is_ready(core.read_namespaced_pod("p", name)), timeout=TIMEOUT, what="the pod to be Ready")
    core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as e:
            if e.status == 404:
                return True
            raise
        return False

    # The namespace controller (KCM) empties it and kwok's pod-delete stage plays the kubelet's final delete.
    wait_for(gone, timeout=TIMEOUT, what=f"namespace {name} to be deleted")


def test_a_node_back_from_not_ready_keeps_its_addresses(api: k8s.ApiClient, kube_cluster: KubeCluster) -> None:
    """Under CI load a node's lease can lapse, and an apiserver outage lapses all of them: KCM marks the node
    Unknown and kwok initializes it again. Its addresses must survive that, or every later pod-log read fails."""
    core = k8s.CoreV1Api(api)
    node = core.read_node_status("cpu-1")
    addresses = [(a.type, a.address) for a in node.status.addresses]
    assert ("InternalIP", "127.0.0.1") in addresses
    lapsed = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ready = {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown", "message": "lease lapsed"}
    stamps = {"lastHeartbeatTime": lapsed.isoformat(), "lastTransitionTime": lapsed.isoformat()}
    core.patch_node_status("cpu-1", {"status": {"conditions": [ready | stamps]}})  # as KCM's node lifecycle does

    def ready_again() -> k8s.V1Node | None:
        node = core.read_node_status("cpu-1")
        condition = next(c for c in node.status.conditions if c.type == "Ready")
        return node if condition.status == "True" else None  # Unknown until kwok plays node-initialize again

    node = wait_for(ready_again, timeout=TIMEOUT, what="kwok to make cpu-1 Ready again")
    assert [(a.type, a.address) for a in node.status.addresses] == addresses


# --- pod logs: kwok plays the nodes' kubelet, serving each container's log from a file (serve_logs) -----------------


def _deployment(name: str, labels: dict[str, str], pod_spec: dict[str, Any], replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def _running(core: k8s.CoreV1Api, namespace: str, name: str) -> k8s.V1Pod:
    return wait_for(
        lambda: (p := core.read_namespaced_pod(name, namespace)).status.phase == "Running" and p,
        timeout=TIMEOUT,
        what=f"pod {name} to run",
    )


def test_deployment_pod_logs_come_from_the_served_file(
    api: k8s.ApiClient, namespace: str, kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC)
    old, recent = now - dt.timedelta(hours=2), now - dt.timedelta(seconds=5)
    logs = tmp_path / "web.log"
    append_cri_log(logs, "booting", at=old)
    append_cri_log(logs, "listening on :8080", at=recent)
    append_cri_log(logs, "GET /health 200", at=recent, stream="stderr")
    # Before the Deployment exists: the rule covers every pod of the namespace, whatever its generated name.
    kube_cluster.serve_logs(namespace, logs, container="main")
    apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
    apps.create_namespaced_deployment(
        namespace, _deployment("web", {"app": "web"}, _pod("unused", {"dais.dev/pool": "cpu"})["spec"])
    )

    def running_pod() -> k8s.V1Pod | None:
        pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
        return next((p for p in pods if p.status.phase == "Running"), None)

    pod = wait_for(running_pod, timeout=TIMEOUT, what="the Deployment's pod to run")
    assert pod.spec.node_name in kube_cluster.nodes
    name = pod.metadata.name

    def read(**options: Any) -> str:
        return str(core.read_namespaced_pod_log(name, namespace, container="main", **options))

    assert read() == "booting\nlistening on :8080\nGET /health 200\n"  # stdout and stderr, as kubectl logs shows
    assert read(timestamps=True).splitlines() == [
        f"{cri_timestamp(old)} booting",
        f"{cri_timestamp(recent)} listening on :8080",
        f"{cri_timestamp(recent)} GET /health 200",
    ]
    # The kubelet's format: RFC 3339 in UTC with nanoseconds, fixed width, then a space.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z booting\n.*", read(timestamps=True), re.DOTALL)
    assert read(tail_lines=2) == "listening on :8080\nGET /health 200\n"
    assert read(tail_lines=0) == ""
    assert read(since_seconds=3600) == "listening on :8080\nGET /health 200\n"
    assert read(limit_bytes=4) == "boot"
    with pytest.raises(ApiException) as missing:  # a container the pod does not have: the apiserver says so
        core.read_namespaced_pod_log(name, namespace, container="nope")
    assert missing.value.status == 400


def test_followed_pod_log_streams_lines_appended_later(
    api: k8s.ApiClient, namespace: str, kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    core = k8s.CoreV1Api(api)
    core.create_namespaced_pod(namespace, _pod("tail", {"dais.dev/pool": "cpu"}))
    _running(core, namespace, "tail")
    logs = tmp_path / "tail.log"
    append_cri_log(logs, "first")
    kube_cluster.serve_logs(namespace, logs, pod="tail")

    response = cast(
        urllib3.HTTPResponse,  # _preload_content=False: the raw response, read as the apiserver streams it
        core.read_namespaced_pod_log(
            "tail", namespace, container="main", follow=True, _preload_content=False, _request_timeout=TIMEOUT
        ),
    )
    lines: queue.Queue[str | BaseException] = queue.Queue()

    def pump() -> None:
        try:
            for line in response:
                lines.put(line.decode().removesuffix("\n"))
            lines.put(EOFError("the followed log ended"))
        except BaseException as e:  # handed to the test's thread
            lines.put(e)

    def next_line(deadline: float) -> str:
        item = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        if isinstance(item, BaseException):
            raise item
        return item

    reader = threading.Thread(target=pump, name="log-follower", daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        assert next_line(deadline) == "first"  # the request is being served: what comes next was appended after it
        append_cri_log(logs, "second", "third")
        assert [next_line(deadline), next_line(deadline)] == ["second", "third"]
    finally:
        response.shutdown()  # wakes the reader blocked on the socket
        response.release_conn()
        reader.join(timeout=TIMEOUT)
    assert not reader.is_alive()


def test_previous_container_logs_and_one_file_per_container(
    api: k8s.ApiClient, namespace: str, kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    core = k8s.CoreV1Api(api)
    pod = _pod("two", {"dais.dev/pool": "cpu"})
    pod["spec"]["containers"].append({"name": "sidecar", "image": "example.invalid/y:1"})
    core.create_namespaced_pod(namespace, pod)
    _running(core, namespace, "two")
    main, previous, sidecar = (tmp_path / f"{n}.log" for n in ("main", "previous", "sidecar"))
    append_cri_log(main, "main now")
    append_cri_log(previous, "main before the restart", "Traceback: CUDA out of memory")
    append_cri_log(sidecar, "sidecar now")
    kube_cluster.serve_logs(namespace, main, pod="two", container="main", previous_logs_file=previous)
    kube_cluster.serve_logs(namespace, sidecar, pod="two", container="sidecar")  # added to the same Logs object

    def read(container: str, previous: bool = False) -> str:
        return str(core.read_namespaced_pod_log("two", namespace, container=container, previous=previous))

    assert read("main") == "main now\n"
    assert read("main", previous=True) == "main before the restart\nTraceback: CUDA out of memory\n"
    assert read("sidecar") == "sidecar now\n"
    with pytest.raises(ApiException):  # no previous file for the sidecar: kwok fails the request
        read("sidecar", previous=True)
