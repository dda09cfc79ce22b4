"""The pure builders, table-driven against dict literals: every engine on CPU and GPU."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from controller.desired import (
    HASH,
    TEMPLATE_HASH,
    BuildConfig,
    EndpointView,
    build,
    desired_replicas,
)
from controller.errors import PermanentError
from core.domain.catalog import load_engine_catalog, load_hardware_catalog

HARDWARE = load_hardware_catalog(None, default_quota=16)
ENGINES = load_engine_catalog(None)
CONFIG = BuildConfig(
    namespace="dais-endpoints",
    fetch_image="dais:test",
    hub_url=None,
    startup_deadline_seconds=1800,
    rollout_deadline_seconds=600,
    hash_key=b"test-key",
)
ID = "0123456789abcdef0123456789abcdef"
NAME = "ep-demo-0123456789ab"
CPU = ("cpu", "intel-spr", "x4")
T4 = ("gpu", "nvidia-t4", "x1")
A10G_4 = ("gpu", "nvidia-a10g", "x4")
CPU_RESOURCES = {"cpu": "4", "memory": "8Gi"}
T4_RESOURCES = {"cpu": "4", "memory": "15Gi", "nvidia.com/gpu": "1"}
A10G_4_RESOURCES = {"cpu": "24", "memory": "120Gi", "nvidia.com/gpu": "4"}


def spec(image: dict[str, Any], *, task: str | None = None, **model: Any) -> dict[str, Any]:
    return {
        "name": "demo",
        "type": "private",
        "provider": {"vendor": "aws", "region": "us-east-1"},
        "compute": {
            "id": "ignored",
            "accelerator": "gpu",
            "instanceType": "nvidia-t4",
            "instanceSize": "x1",
            "scaling": {"minReplica": 1, "maxReplica": 2, "scaleToZeroTimeout": None, "measure": None, "metric": None},
        },
        "model": {
            "repository": "org/model",
            "revision": None,
            "task": task,
            "framework": "pytorch",
            "image": image,
            "env": {},
            "secrets": {},
            "command": None,
            "args": None,
            **model,
        },
    }


def view(body: dict[str, Any], *, secrets: dict[str, str] | None = None, **kw: Any) -> EndpointView:
    fields: dict[str, Any] = {"revision": "0" * 40, "replicas": 1, "generation": 1}
    fields.update(kw)
    return EndpointView(id=ID, namespace="alice", name="demo", spec=body, secrets=secrets or {}, **fields)


def objects(hardware: tuple[str, str, str], body: dict[str, Any], **kw: Any) -> dict[str, dict[str, Any]]:
    compute = HARDWARE.find(("aws", "us-east-1", *hardware))
    assert compute is not None
    built = build(view(body, **kw), compute=compute, engines=ENGINES, config=CONFIG)
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in built}


def engine_of(hardware: tuple[str, str, str], body: dict[str, Any]) -> dict[str, Any]:
    container = objects(hardware, body)[f"Deployment/{NAME}"]["spec"]["template"]["spec"]["containers"][0]
    return {k: container.get(k) for k in ("image", "command", "args", "env", "ports", "resources")}


def probe_path(hardware: tuple[str, str, str], body: dict[str, Any]) -> str:
    container = objects(hardware, body)[f"Deployment/{NAME}"]["spec"]["template"]["spec"]["containers"][0]
    path: str = container["readinessProbe"]["httpGet"]["path"]
    return path


def ports(port: int) -> list[dict[str, Any]]:
    return [{"name": "http", "containerPort": port, "protocol": "TCP"}]


def same(resources: dict[str, str]) -> dict[str, dict[str, str]]:
    return {"requests": resources, "limits": resources}


ENGINE_CASES = [
    pytest.param(
        T4,
        {"tgi": {"maxInputLength": 1024, "disableCustomKernels": True, "quantize": None}},
        None,
        {
            "image": "ghcr.io/huggingface/text-generation-inference:3.3.6",
            "command": None,
            "args": [
                "--model-id",
                "/repository",
                "--port",
                "80",
                "--num-shard",
                "1",
                "--max-input-length",
                "1024",
                "--disable-custom-kernels",
            ],
            "env": [],
            "ports": ports(80),
            "resources": same(T4_RESOURCES),
        },
        id="tgi-gpu",
    ),
    pytest.param(
        CPU,
        {"tei": {"maxBatchTokens": 16384, "pooling": "mean"}},
        None,
        {
            "image": "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8.3",
            "command": None,
            "args": ["--model-id", "/repository", "--port", "80", "--max-batch-tokens", "16384", "--pooling", "mean"],
            "env": [],
            "ports": ports(80),
            "resources": same(CPU_RESOURCES),
        },
        id="tei-cpu",
    ),
    pytest.param(
        T4,
        {"tei": {}},
        None,
        {
            "image": "ghcr.io/huggingface/text-embeddings-inference:1.8.3",
            "command": None,
            "args": ["--model-id", "/repository", "--port", "80"],
            "env": [],
            "ports": ports(80),
            "resources": same(T4_RESOURCES),
        },
        id="tei-gpu",
    ),
    pytest.param(
        A10G_4,
        {"vLLM": {"maxNumSeqs": 64}},
        None,
        {
            "image": "vllm/vllm-openai:v0.23.0",
            "command": None,
            "args": [
                "--model",
                "/repository",
                "--served-model-name",
                "org/model",
                "--host",
                "0.0.0.0",
                "--port",
                "8000",
                "--tensor-parallel-size",
                "4",
                "--data-parallel-size",
                "1",
                "--max-num-seqs",
                "64",
            ],
            "env": [],
            "ports": ports(8000),
            "resources": same(A10G_4_RESOURCES),
        },
        id="vllm-gpu-tensor-parallel-defaults-to-gpus",
    ),
    pytest.param(
        A10G_4,
        {"vLLM": {"dataParallelSize": 2}},
        None,
        {
            "image": "vllm/vllm-openai:v0.23.0",
            "command": None,
            "args": [
                "--model",
                "/repository",
                "--served-model-name",
                "org/model",
                "--host",
                "0.0.0.0",
                "--port",
                "8000",
                "--tensor-parallel-size",
                "2",
                "--data-parallel-size",
                "2",
            ],
            "env": [],
            "ports": ports(8000),
            "resources": same(A10G_4_RESOURCES),
        },
        id="vllm-gpu-data-parallel",
    ),
    pytest.param(
        A10G_4,
        {"sGLang": {"url": "lmsysorg/sglang:v0.5.6", "maxRunningRequests": 32}},
        None,
        {
            "image": "lmsysorg/sglang:v0.5.6",
            "command": ["python3", "-m", "sglang.launch_server"],
            "args": [
                "--model-path",
                "/repository",
                "--served-model-name",
                "org/model",
                "--host",
                "0.0.0.0",
                "--port",
                "30000",
                "--tp-size",
                "4",
                "--max-running-requests",
                "32",
            ],
            "env": [],
            "ports": ports(30000),
            "resources": same(A10G_4_RESOURCES),
        },
        id="sglang-gpu-own-image",
    ),
    pytest.param(
        CPU,
        {"llamacpp": {"modelPath": "model-q4_k_m.gguf", "ctxSize": 4096}},
        None,
        {
            "image": "ghcr.io/ggml-org/llama.cpp:server-b7000",
            "command": None,
            "args": [
                "--model",
                "/repository/model-q4_k_m.gguf",
                "--alias",
                "org/model",
                "--host",
                "0.0.0.0",
                "--port",
                "8080",
                "--ctx-size",
                "4096",
            ],
            "env": [],
            "ports": ports(8080),
            "resources": same(CPU_RESOURCES),
        },
        id="llamacpp-cpu",
    ),
    pytest.param(
        T4,
        {"llamacpp": {"modelPath": "model-q4_k_m.gguf"}},
        None,
        {
            "image": "ghcr.io/ggml-org/llama.cpp:server-cuda-b7000",
            "command": None,
            "args": [
                "--model",
                "/repository/model-q4_k_m.gguf",
                "--alias",
                "org/model",
                "--host",
                "0.0.0.0",
                "--port",
                "8080",
                "--n-gpu-layers",
                "999",
            ],
            "env": [],
            "ports": ports(8080),
            "resources": same(T4_RESOURCES),
        },
        id="llamacpp-gpu",
    ),
    pytest.param(
        CPU,
        {"custom": {"url": "registry.example.com/team/app:1.0", "port": 7000, "healthRoute": "/ready"}},
        {"command": ["/bin/app"], "args": ["--serve"], "env": {"MODE": "fast"}},
        {
            "image": "registry.example.com/team/app:1.0",
            "command": ["/bin/app"],
            "args": ["--serve"],
            "env": [{"name": "MODE", "value": "fast"}],
            "ports": ports(7000),
            "resources": same(CPU_RESOURCES),
        },
        id="custom-cpu",
    ),
    pytest.param(
        T4,
        {"custom": {"url": "ghcr.io/team/app:2"}},
        None,
        {
            "image": "ghcr.io/team/app:2",
            "command": None,
            "args": None,
            "env": [],
            "ports": ports(80),
            "resources": same(T4_RESOURCES),
        },
        id="custom-gpu",
    ),
    pytest.param(
        T4,
        {"huggingface": {}},
        {"task": "text-generation"},
        {
            "image": "vllm/vllm-openai:v0.23.0",
            "command": None,
            "args": [
                "--model",
                "/repository",
                "--served-model-name",
                "org/model",
                "--host",
                "0.0.0.0",
                "--port",
                "8000",
                "--tensor-parallel-size",
                "1",
                "--data-parallel-size",
                "1",
            ],
            "env": [],
            "ports": ports(8000),
            "resources": same(T4_RESOURCES),
        },
        id="huggingface-generation-gpu-is-vllm",
    ),
    pytest.param(
        CPU,
        {"huggingface": {}},
        {"task": "sentence-similarity"},
        {
            "image": "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8.3",
            "command": None,
            "args": ["--model-id", "/repository", "--port", "80"],
            "env": [],
            "ports": ports(80),
            "resources": same(CPU_RESOURCES),
        },
        id="huggingface-similarity-cpu-is-tei",
    ),
    pytest.param(
        CPU,
        {"huggingface": {}},
        {"task": "text-generation"},
        {
            "image": "ghcr.io/dais-dev/dais:0.1.0",
            "command": ["dais"],
            "args": [
                "engine",
                "--model",
                "/repository",
                "--model-id",
                "org/model",
                "--task",
                "text-generation",
                "--host",
                "0.0.0.0",
                "--port",
                "8080",
            ],
            "env": [],
            "ports": ports(8080),
            "resources": same(CPU_RESOURCES),
        },
        id="huggingface-generation-cpu-is-dais-engine (vllm has no cpu image)",
    ),
    pytest.param(
        T4,
        {"huggingface": {}},
        {"task": "image-classification"},
        {
            "image": "ghcr.io/dais-dev/dais:0.1.0-cuda",
            "command": ["dais"],
            "args": [
                "engine",
                "--model",
                "/repository",
                "--model-id",
                "org/model",
                "--task",
                "image-classification",
                "--host",
                "0.0.0.0",
                "--port",
                "8080",
            ],
            "env": [],
            "ports": ports(8080),
            "resources": same(T4_RESOURCES),
        },
        id="huggingface-other-task-gpu-is-dais-engine",
    ),
]


@pytest.mark.parametrize(("hardware", "image", "model", "expected"), ENGINE_CASES)
def test_engine_container(
    hardware: tuple[str, str, str], image: dict[str, Any], model: dict[str, Any] | None, expected: dict[str, Any]
) -> None:
    assert engine_of(hardware, spec(image, **(model or {}))) == expected


@pytest.mark.parametrize(
    ("hardware", "image", "message"),
    [
        (CPU, {"tgi": {}}, "engine tgi has no cpu image in the engine catalog (it runs on gpu)"),
        (A10G_4, {"vLLM": {"tensorParallelSize": 3}}, "tensorParallelSize (3) × dataParallelSize (1) must equal"),
        (CPU, {"llamacpp": {}}, "model.image.llamacpp.modelPath is required"),
        (CPU, {"vLLM": {}}, "engine vLLM has no cpu image in the engine catalog (it runs on gpu)"),
        (CPU, {"sGLang": {}}, "engine sGLang has no cpu image in the engine catalog (it runs on gpu)"),
    ],
)
def test_specs_that_cannot_run_are_permanent_errors(
    hardware: tuple[str, str, str], image: dict[str, Any], message: str
) -> None:
    with pytest.raises(PermanentError, match=message.replace("(", r"\(").replace(")", r"\)")):
        objects(hardware, spec(image))


def test_health_route_comes_from_the_spec_then_the_catalog() -> None:
    assert probe_path(CPU, spec({"tei": {"healthRoute": "/healthz"}})) == "/healthz"
    assert probe_path(CPU, spec({"tei": {}})) == "/health"


LABELS = {
    "app.kubernetes.io/name": "vllm",
    "app.kubernetes.io/instance": NAME,
    "app.kubernetes.io/component": "inference-endpoint",
    "app.kubernetes.io/part-of": "dais",
    "app.kubernetes.io/managed-by": "dais-controller",
    "dais.dev/endpoint-id": ID,
}


def _without_hash(obj: dict[str, Any]) -> dict[str, Any]:
    annotations = {k: v for k, v in obj["metadata"]["annotations"].items() if k != HASH}
    return {**obj, "metadata": {**obj["metadata"], "annotations": annotations}}


def test_service_and_secret() -> None:
    built = objects(A10G_4, spec({"vLLM": {}}, secrets={"TOKEN": "**redacted**"}), secrets={"TOKEN": "s3cret"})
    metadata = {
        "name": NAME,
        "namespace": "dais-endpoints",
        "labels": LABELS,
        "annotations": {"dais.dev/namespace": "alice", "dais.dev/name": "demo"},
    }
    assert _without_hash(built[f"Secret/{NAME}"]) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "data": {"TOKEN": base64.b64encode(b"s3cret").decode()},
    }
    assert _without_hash(built[f"Service/{NAME}"]) == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "ClusterIP",
            "selector": {"dais.dev/endpoint-id": ID},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    assert list(built) == [f"Secret/{NAME}", f"Service/{NAME}", f"Deployment/{NAME}"]  # the apply order


def test_no_secrets_no_secret_object() -> None:
    assert list(objects(CPU, spec({"tei": {}}))) == [f"Service/{NAME}", f"Deployment/{NAME}"]


def test_deployment_on_a_multi_gpu_instance() -> None:
    deployment = objects(A10G_4, spec({"vLLM": {}}), replicas=2)[f"Deployment/{NAME}"]
    pod = deployment["spec"]["template"]["spec"]
    engine = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"] == {"matchLabels": {"dais.dev/endpoint-id": ID}}
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert deployment["spec"]["progressDeadlineSeconds"] == 600
    assert deployment["spec"]["template"]["metadata"]["labels"] == LABELS
    assert pod["nodeSelector"] == {"dais.dev/pool": "gpu", "dais.dev/gpu": "nvidia-a10g"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["volumes"] == [
        {"name": "repository", "emptyDir": {}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
    ]
    assert engine["volumeMounts"] == [
        {"name": "repository", "mountPath": "/repository"},
        {"name": "shm", "mountPath": "/dev/shm"},
    ]
    assert engine["envFrom"] == [{"secretRef": {"name": NAME, "optional": True}}]
    assert engine["readinessProbe"] == {
        "httpGet": {"path": "/health", "port": "http"},
        "periodSeconds": 1,
        "timeoutSeconds": 1,
        "failureThreshold": 3,
    }
    assert engine["startupProbe"] == {
        "httpGet": {"path": "/health", "port": "http"},
        "periodSeconds": 5,
        "timeoutSeconds": 1,
        "failureThreshold": 360,  # 1,800 s of start-up before the kubelet restarts it
    }
    assert pod["initContainers"] == [
        {
            "name": "model-fetch",
            "image": "dais:test",
            "command": ["dais"],
            "args": ["model", "fetch", "--repo", "org/model", "--revision", "0" * 40, "--dest", "/repository"],
            "env": [
                {
                    "name": "HF_TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": NAME, "key": "HF_TOKEN", "optional": True}},
                },
                {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
            ],
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
            "volumeMounts": [{"name": "repository", "mountPath": "/repository"}],
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }
    ]
    assert pod["automountServiceAccountToken"] is False


def test_single_gpu_and_cpu_replicas_get_no_shared_memory_volume() -> None:
    for hardware in (T4, CPU):
        pod = objects(hardware, spec({"tei": {}}))[f"Deployment/{NAME}"]["spec"]["template"]["spec"]
        assert pod["volumes"] == [{"name": "repository", "emptyDir": {}}]
    cpu_pod = objects(CPU, spec({"tei": {}}))[f"Deployment/{NAME}"]["spec"]["template"]["spec"]
    assert cpu_pod["nodeSelector"] == {"dais.dev/pool": "cpu"}
    assert "tolerations" not in cpu_pod


def test_llamacpp_fetches_only_its_gguf_file() -> None:
    pod = objects(CPU, spec({"llamacpp": {"modelPath": "m.gguf"}}))[f"Deployment/{NAME}"]["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["args"][-2:] == ["--include", "m.gguf"]


def test_the_hub_resolution_picks_llamacpp_and_its_gguf_for_the_default_image() -> None:
    built = objects(
        CPU, spec({"huggingface": {}}, task="text-generation"), engine="llamacpp", model_path="m-Q4_K_M.gguf"
    )
    deployment = built[f"Deployment/{NAME}"]
    engine = deployment["spec"]["template"]["spec"]["containers"][0]
    assert engine["image"] == "ghcr.io/ggml-org/llama.cpp:server-b7000"
    assert engine["args"][:2] == ["--model", "/repository/m-Q4_K_M.gguf"]
    fetch = deployment["spec"]["template"]["spec"]["initContainers"][0]
    assert fetch["args"][-2:] == ["--include", "m-Q4_K_M.gguf"]
    assert deployment["metadata"]["labels"]["app.kubernetes.io/name"] == "llamacpp"


def test_the_namespace_hub_token_lands_in_the_secret_unless_the_endpoint_has_its_own() -> None:
    shared = objects(CPU, spec({"tei": {}}), hub_token="hf_namespace")[f"Secret/{NAME}"]
    assert shared["data"] == {"HF_TOKEN": base64.b64encode(b"hf_namespace").decode()}
    own = objects(CPU, spec({"tei": {}}), hub_token="hf_namespace", secrets={"HF_TOKEN": "hf_own"})[f"Secret/{NAME}"]
    assert own["data"] == {"HF_TOKEN": base64.b64encode(b"hf_own").decode()}


def test_registry_credentials_become_an_image_pull_secret() -> None:
    body = spec({"custom": {"url": "registry.example.com/team/app:1.0", "credentials": {"username": "bot"}}})
    built = objects(CPU, body, registry_password="hunter2")
    pull = built[f"Secret/{NAME}-registry"]
    assert pull["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(pull["data"][".dockerconfigjson"]))
    auth = base64.b64encode(b"bot:hunter2").decode()
    assert config == {"auths": {"registry.example.com": {"username": "bot", "password": "hunter2", "auth": auth}}}
    pod = built[f"Deployment/{NAME}"]["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": f"{NAME}-registry"}]


def test_docker_hub_images_use_the_docker_hub_registry_key() -> None:
    body = spec({"custom": {"url": "team/app:1.0", "credentials": {"username": "bot"}}})
    pull = objects(CPU, body, registry_password="pw")[f"Secret/{NAME}-registry"]
    config = json.loads(base64.b64decode(pull["data"][".dockerconfigjson"]))
    assert list(config["auths"]) == ["https://index.docker.io/v1/"]


def _hashes(built: dict[str, dict[str, Any]]) -> tuple[str, str, str]:
    deployment = built[f"Deployment/{NAME}"]
    return (
        deployment["metadata"]["annotations"][HASH],
        deployment["spec"]["template"]["metadata"]["annotations"][TEMPLATE_HASH],
        deployment["spec"]["template"]["metadata"]["annotations"]["dais.dev/secrets-digest"],
    )


def test_hashes_are_stable_and_track_what_changes() -> None:
    base = _hashes(objects(T4, spec({"tei": {}}), secrets={"S": "1"}))
    assert _hashes(objects(T4, spec({"tei": {}}), secrets={"S": "1"})) == base
    # Replica counts live outside the pod template: scaling does not roll the replicas.
    scaled = _hashes(objects(T4, spec({"tei": {}}), secrets={"S": "1"}, replicas=3))
    assert scaled[0] != base[0]
    assert scaled[1:] == base[1:]
    # A new env value or secret value rolls them.
    assert _hashes(objects(T4, spec({"tei": {}}, env={"A": "2"}), secrets={"S": "1"}))[1] != base[1]
    rotated = _hashes(objects(T4, spec({"tei": {}}), secrets={"S": "2"}))
    assert rotated[1] != base[1]
    assert rotated[2] != base[2]


@pytest.mark.parametrize(
    ("scaling", "paused", "scaled_to_zero", "autoscaled", "expected"),
    [
        ({"minReplica": 1, "maxReplica": 3}, False, False, None, 1),
        ({"minReplica": 2, "maxReplica": 3}, False, False, None, 2),
        ({"minReplica": 0, "maxReplica": 3}, False, False, None, 1),  # serves until scaled to zero
        ({"minReplica": 0, "maxReplica": 3}, False, True, None, 0),
        ({"minReplica": 2, "maxReplica": 3}, True, False, None, 0),  # pause wins
        ({"minReplica": 1, "maxReplica": 3}, False, False, 7, 3),  # clamped to the bounds
        ({"minReplica": 2, "maxReplica": 3}, False, False, 1, 2),
    ],
)
def test_desired_replicas(
    scaling: dict[str, int], paused: bool, scaled_to_zero: bool, autoscaled: int | None, expected: int
) -> None:
    body = {"compute": {"scaling": scaling}}
    assert desired_replicas(spec=body, paused=paused, scaled_to_zero=scaled_to_zero, autoscaled=autoscaled) == expected
