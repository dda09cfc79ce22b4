"""The test cluster harness itself: real apiserver, KCM, scheduler, and kwok-driven fake CPU and GPU nodes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.fixtures.kube import GPU_RESOURCE, KubeCluster, gpu_node_selectors, is_ready, versions, wait_for

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
