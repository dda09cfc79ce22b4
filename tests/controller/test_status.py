"""Status mapping, table-driven: cluster objects as the API server shows them → state and message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.desired import TEMPLATE_HASH
from controller.status import crash_looping, observe, serving_addresses, startup_seconds
from core.domain.catalog import load_hardware_catalog
from core.domain.enums import EndpointState

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
HARDWARE = load_hardware_catalog(None, default_quota=16)
A10G_2 = HARDWARE.find(("aws", "us-east-1", "gpu", "nvidia-a10g", "x4"))
URL = "https://gw.example.com/alice/demo"


def deployment(template: str = "new", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "ep", "generation": 2},
        "spec": {"template": {"metadata": {"annotations": {TEMPLATE_HASH: template}}}},
        "status": {"observedGeneration": 2, "updatedReplicas": 1, "replicas": 1, **status},
    }


def pod(
    *,
    template: str = "new",
    ready: bool = False,
    node: str | None = "gpu-0",
    age_s: float = 10,
    scheduled: dict[str, str] | None = None,
    init: dict[str, Any] | None = None,
    engine: dict[str, Any] | None = None,
    name: str = "ep-abc",
) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if scheduled:
        conditions.append({"type": "PodScheduled", "status": "False", **scheduled})
    status: dict[str, Any] = {"conditions": conditions}
    if init is not None:
        status["initContainerStatuses"] = [{"name": "model-fetch", **init}]
    if engine is not None:
        status["containerStatuses"] = [{"name": "engine", "image": "vllm/vllm-openai:v0.23.0", **engine}]
    created = (NOW - timedelta(seconds=age_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
    spec = {"nodeName": node} if node else {}
    return {
        "metadata": {"name": name, "creationTimestamp": created, "annotations": {TEMPLATE_HASH: template}},
        "spec": spec,
        "status": status,
    }


def run(
    *,
    paused: bool = False,
    replicas: int = 1,
    dep: dict[str, Any] | None = None,
    pods: list[dict[str, Any]] | None = None,
    logs: dict[str, str] | None = None,
    build_error: str | None = None,
) -> tuple[EndpointState, str, int, int, str | None]:
    seen = observe(
        paused=paused,
        replicas=replicas,
        compute=A10G_2,
        deployment=dep,
        pods=pods or [],
        logs=logs or {},
        url=URL,
        startup_deadline_seconds=600,
        now=NOW,
        build_error=build_error,
    )
    return seen.state, seen.message, seen.ready_replica, seen.target_replica, seen.url


DONE = {"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
RUNNING = {"state": {"running": {}}}

CASES = [
    pytest.param(
        {"paused": True, "replicas": 0, "dep": deployment(), "pods": [pod(ready=True)]},
        (EndpointState.PAUSED, "Endpoint is paused; resume it to serve again", 1, 0, None),
        id="paused-wins-while-pods-drain",
    ),
    pytest.param(
        {"replicas": 0, "dep": deployment()},
        (EndpointState.SCALED_TO_ZERO, "Endpoint is scaled to zero; the next request wakes it", 0, 0, None),
        id="scaled-to-zero",
    ),
    pytest.param(
        {"build_error": "engine tgi has no cpu image"},
        (EndpointState.FAILED, "engine tgi has no cpu image", 0, 1, None),
        id="spec-that-cannot-run",
    ),
    pytest.param(
        {"dep": None},
        (EndpointState.PENDING, "waiting for the Deployment to be created", 0, 1, None),
        id="no-deployment-yet",
    ),
    pytest.param(
        {"dep": deployment(), "pods": [pod(node=None)]},
        (EndpointState.PENDING, "Endpoint waiting to be scheduled", 0, 1, None),
        id="not-scheduled-yet",
    ),
    pytest.param(
        {
            "dep": deployment(),
            "pods": [
                pod(
                    node=None,
                    scheduled={
                        "reason": "Unschedulable",
                        "message": "0/5 nodes are available: 2 Insufficient nvidia.com/gpu, 3 node(s) didn't "
                        "match Pod's node affinity/selector.",
                    },
                )
            ],
        },
        (EndpointState.PENDING, "waiting for 4× nvidia-a10g: insufficient nvidia.com/gpu", 0, 1, None),
        id="unschedulable-names-the-short-resource",
    ),
    pytest.param(
        {
            "dep": deployment(),
            "pods": [
                pod(
                    node=None,
                    scheduled={
                        "reason": "Unschedulable",
                        "message": "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.",
                    },
                )
            ],
        },
        (
            EndpointState.PENDING,
            "waiting for 4× nvidia-a10g: no node matches the hardware's node selector and tolerations "
            "(ask your platform team)",
            0,
            1,
            None,
        ),
        id="unschedulable-no-matching-node",
    ),
    pytest.param(
        {"dep": deployment(), "pods": [pod(init=RUNNING)]},
        (EndpointState.INITIALIZING, "downloading the model", 0, 1, None),
        id="downloading",
    ),
    pytest.param(
        {"dep": deployment(), "pods": [pod(init=DONE, engine=RUNNING)]},
        (EndpointState.INITIALIZING, "starting the engine and loading the model", 0, 1, None),
        id="loading",
    ),
    pytest.param(
        {"dep": deployment(), "pods": [pod(ready=True, init=DONE, engine=RUNNING)]},
        (EndpointState.RUNNING, "Endpoint is ready", 1, 1, URL),
        id="running",
    ),
    pytest.param(
        {
            "replicas": 2,
            "dep": deployment(updatedReplicas=2, replicas=2),
            "pods": [pod(ready=True), pod(name="ep-def")],
        },
        (EndpointState.RUNNING, "Endpoint is ready", 1, 2, URL),
        id="running-while-scaling-up",
    ),
    pytest.param(
        {"dep": deployment(replicas=2), "pods": [pod(template="old", ready=True, name="old"), pod(init=RUNNING)]},
        (EndpointState.UPDATING, "rolling out the new version: 0 of 1 new replicas ready", 1, 1, None),
        id="updating-old-replica-serves",
    ),
    pytest.param(
        {
            "dep": deployment(replicas=2),
            "pods": [
                pod(template="old", ready=True, name="old"),
                pod(engine={"state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}),
            ],
        },
        (
            EndpointState.UPDATE_FAILED,
            "update failed, the previous version keeps serving: image vllm/vllm-openai:v0.23.0 cannot be pulled "
            "(ImagePullBackOff: not found): check the image name and tag, and the registry credentials",
            1,
            1,
            None,
        ),
        id="update-failed-bad-image",
    ),
    pytest.param(
        {
            "dep": deployment(
                replicas=2,
                conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
            ),
            "pods": [pod(template="old", ready=True, name="old"), pod(engine=RUNNING)],
        },
        (
            EndpointState.UPDATE_FAILED,
            "update failed, the previous version keeps serving: the new version did not become Ready before "
            "the rollout deadline",
            1,
            1,
            None,
        ),
        id="update-failed-rollout-deadline",
    ),
    pytest.param(
        {"dep": deployment(), "pods": [pod(engine={"state": {"waiting": {"reason": "ErrImagePull"}}})]},
        (
            EndpointState.FAILED,
            "image vllm/vllm-openai:v0.23.0 cannot be pulled (ErrImagePull): check the image name and tag, and "
            "the registry credentials",
            0,
            1,
            None,
        ),
        id="failed-image-pull",
    ),
    pytest.param(
        {
            "dep": deployment(),
            "pods": [
                pod(
                    engine={
                        "restartCount": 4,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
                    }
                )
            ],
            "logs": {"ep-abc/engine": "loading\nValueError: unknown architecture\n"},
        },
        (
            EndpointState.FAILED,
            "the engine keeps crashing (exit code 1), restarted 4 times; last log lines:\nloading\n"
            "ValueError: unknown architecture",
            0,
            1,
            None,
        ),
        id="failed-crash-loop-with-logs",
    ),
    pytest.param(
        {
            "dep": deployment(),
            "pods": [
                pod(
                    engine={
                        "restartCount": 2,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                    }
                )
            ],
        },
        (
            EndpointState.FAILED,
            "the engine ran out of memory (OOMKilled) on aws-us-east-1-nvidia-a10g-x4 (120 GB): choose hardware "
            "with more memory or a smaller or quantized model",
            0,
            1,
            None,
        ),
        id="failed-oom",
    ),
    pytest.param(
        {
            "dep": deployment(),
            "pods": [
                pod(
                    init={
                        "restartCount": 3,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"exitCode": 2, "message": "401 Unauthorized: gated repo"}},
                    }
                )
            ],
        },
        (
            EndpointState.FAILED,
            "the model download keeps crashing (exit code 2), restarted 3 times; last log lines:\n"
            "401 Unauthorized: gated repo",
            0,
            1,
            None,
        ),
        id="failed-model-download",
    ),
    pytest.param(
        {"dep": deployment(), "pods": [pod(init=DONE, engine=RUNNING, age_s=601)]},
        (
            EndpointState.FAILED,
            "no replica became Ready within 10 minutes: check the endpoint's logs; for a very large model raise "
            "DAIS_CONTROLLER__STARTUP_DEADLINE_SECONDS",
            0,
            1,
            None,
        ),
        id="failed-startup-deadline",
    ),
]


@pytest.mark.parametrize(("given", "expected"), CASES)
def test_observe(given: dict[str, Any], expected: tuple[Any, ...]) -> None:
    assert run(**given) == expected


def test_initializing_asks_to_be_woken_at_the_startup_deadline() -> None:
    seen = observe(
        paused=False,
        replicas=1,
        compute=A10G_2,
        deployment=deployment(),
        pods=[pod(init=DONE, engine=RUNNING, age_s=100)],
        logs={},
        url=URL,
        startup_deadline_seconds=600,
        now=NOW,
    )
    assert seen.recheck_after == pytest.approx(500)


def test_pods_being_deleted_do_not_count() -> None:
    leaving = pod(ready=True)
    leaving["metadata"]["deletionTimestamp"] = "2026-11-23T11:59:00Z"
    assert run(dep=deployment(), pods=[leaving])[0] is EndpointState.PENDING


def test_crash_looping_names_the_containers_whose_logs_explain_it() -> None:
    looping = pod(engine={"state": {"waiting": {"reason": "CrashLoopBackOff"}}})
    assert crash_looping([looping, pod(engine=RUNNING, name="fine")]) == [("ep-abc", "engine")]


def serving_pod(
    ip: str | None, *, ready: bool, started_s: float, ready_s: float | None, port: int = 8080
) -> dict[str, Any]:
    start = (NOW - timedelta(seconds=started_s)).isoformat().replace("+00:00", "Z")
    condition: dict[str, Any] = {"type": "Ready", "status": "True" if ready else "False"}
    if ready_s is not None:
        condition["lastTransitionTime"] = (NOW - timedelta(seconds=ready_s)).isoformat().replace("+00:00", "Z")
    return {
        "metadata": {"name": f"ep-{ip}", "creationTimestamp": start},
        "spec": {"containers": [{"name": "engine", "ports": [{"containerPort": port}]}]},
        "status": {"podIP": ip, "startTime": start, "conditions": [condition]},
    }


def test_serving_addresses_are_the_ready_pods_engine_ports() -> None:
    pods = [
        serving_pod("10.0.0.2", ready=True, started_s=100, ready_s=40),
        serving_pod("10.0.0.1", ready=True, started_s=300, ready_s=200),
        serving_pod("10.0.0.3", ready=False, started_s=10, ready_s=None),  # starting: not yet
        serving_pod(None, ready=True, started_s=10, ready_s=5),  # no address yet
        serving_pod("fd00::7", ready=True, started_s=50, ready_s=20, port=80),
    ]
    terminating = serving_pod("10.0.0.9", ready=True, started_s=500, ready_s=400)
    terminating["metadata"]["deletionTimestamp"] = NOW.isoformat()
    assert serving_addresses([*pods, terminating]) == ["10.0.0.1:8080", "10.0.0.2:8080", "[fd00::7]:80"]


def test_startup_seconds_is_the_most_recently_ready_pods_time_to_ready() -> None:
    pods = [
        serving_pod("10.0.0.1", ready=True, started_s=300, ready_s=200),  # took 100 s, Ready long ago
        serving_pod("10.0.0.2", ready=True, started_s=100, ready_s=40),  # took 60 s, the latest
        serving_pod("10.0.0.3", ready=False, started_s=10, ready_s=None),
    ]
    assert startup_seconds(pods) == 60
    assert startup_seconds([pods[2]]) is None
