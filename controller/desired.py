"""Pure builders: one endpoint's spec + the catalogs → the Kubernetes objects that should exist.

No I/O, no clock. Every object carries the standard ``app.kubernetes.io/*`` labels and
``dais.dev/endpoint-id`` (it is found by label, never by name) and an annotation with the hash of its own
desired body: the planner compares hashes, so an unchanged endpoint costs no Kubernetes write.
Only what the spec decides goes into the pod template; replica counts live outside it, so a change of
replica bounds scales in place instead of rolling every replica.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from controller.errors import PermanentError
from core.domain.catalog import EngineCatalog, EngineDefaults, EngineError, HardwareRow, ResolvedEngine
from core.domain.enums import Accelerator, ImageVariant
from core.kube.labels import ENDPOINT_ID, MANAGED_BY

HASH = "dais.dev/applied-hash"
TEMPLATE_HASH = "dais.dev/template-hash"  # on pods: which version of the endpoint they run
REPOSITORY = "/repository"
ENGINE_CONTAINER = "engine"
FETCH_CONTAINER = "model-fetch"
GPU_RESOURCE = "nvidia.com/gpu"
HTTP_PORT = 80  # the Service's port; the gateway never needs to know the engine's


@dataclass(frozen=True, slots=True)
class EndpointView:
    """What the controller read from the database for one endpoint (secrets already decrypted)."""

    id: str
    namespace: str
    name: str
    spec: dict[str, Any]
    generation: int
    revision: str
    replicas: int
    secrets: dict[str, str] = field(default_factory=dict)
    registry_password: str | None = None
    engine: str | None = None  # the Hub resolution's engine for the huggingface image (e.g. llamacpp for GGUF)
    model_path: str | None = None  # llama.cpp's GGUF file, from the spec or the Hub resolution
    hub_token: str | None = None  # the namespace's Hub token, for gated and private models


@dataclass(frozen=True, slots=True)
class BuildConfig:
    namespace: str
    fetch_image: str
    hub_url: str | None
    startup_deadline_seconds: int
    rollout_deadline_seconds: int
    hash_key: bytes  # keys the digest of secret values in the pod template, so the digest reveals nothing


def desired_replicas(*, spec: dict[str, Any], paused: bool, scaled_to_zero: bool, autoscaled: int | None) -> int:
    """Paused wins; then scale to zero; otherwise the autoscaler's count clamped to the bounds.

    Without an autoscaler decision, ``minReplica`` (or 1 when it is 0: an endpoint serves until it is
    scaled to zero).
    """
    if paused or scaled_to_zero:
        return 0
    scaling = spec["compute"]["scaling"]
    low, high = int(scaling["minReplica"]), int(scaling["maxReplica"])
    wanted = autoscaled if autoscaled is not None else max(low, 1)
    return max(low, min(high, wanted))


def object_name(endpoint: EndpointView) -> str:
    """Readable and unique: the endpoint name plus 48 bits of its id; starts with a letter (DNS-1035)."""
    return f"ep-{endpoint.name}-{endpoint.id[:12]}"


def labels(endpoint: EndpointView, engine: ImageVariant) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": engine.value.lower(),
        "app.kubernetes.io/instance": object_name(endpoint),
        "app.kubernetes.io/component": "inference-endpoint",
        "app.kubernetes.io/part-of": "dais",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        ENDPOINT_ID: endpoint.id,
    }


def build(
    endpoint: EndpointView, *, compute: HardwareRow, engines: EngineCatalog, config: BuildConfig
) -> list[dict[str, Any]]:
    """The objects in apply order: secrets first (the pods read them), then the Service, then the Deployment.

    The Secret holding env secrets (and later the Hub token) exists only when there is something to hold.
    """
    model = endpoint.spec["model"]
    ((variant_key, variant_config),) = model["image"].items()
    variant = ImageVariant(endpoint.engine or variant_key)
    if endpoint.model_path:
        variant_config = {**variant_config, "modelPath": endpoint.model_path}
    try:
        resolved = engines.resolve(variant, variant_config, task=model.get("task"), compute=compute)
    except EngineError as exc:
        raise PermanentError(str(exc)) from None
    engine, recipe = resolved.engine, resolved.recipe
    # The spec's own port and health route win over the catalog's, whichever engine was picked.
    port = int(variant_config.get("port") or recipe.port)
    health = variant_config.get("healthRoute") or recipe.health_route
    meta_labels = labels(endpoint, engine)
    name = object_name(endpoint)
    annotations = {"dais.dev/namespace": endpoint.namespace, "dais.dev/name": endpoint.name}

    def metadata(object_name_: str) -> dict[str, Any]:
        return {
            "name": object_name_,
            "namespace": config.namespace,
            "labels": dict(meta_labels),
            "annotations": dict(annotations),
        }

    secrets = dict(endpoint.secrets)
    if endpoint.hub_token and "HF_TOKEN" not in secrets:  # the endpoint's own HF_TOKEN secret wins
        secrets["HF_TOKEN"] = endpoint.hub_token
    secret_data = dict(sorted(secrets.items()))
    objects: list[dict[str, Any]] = []
    if secret_data:  # no empty Secrets: the pods reference it as optional
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": metadata(name),
                "type": "Opaque",
                "data": {k: _b64(v) for k, v in secret_data.items()},
            }
        )
    pull_secret = _pull_secret(variant_config, endpoint)
    if pull_secret is not None:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": metadata(f"{name}-registry"),
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": _b64(orjson.dumps(pull_secret).decode())},
            }
        )
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(name),
            "spec": {
                "type": "ClusterIP",
                "selector": {ENDPOINT_ID: endpoint.id},
                "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
            },
        }
    )
    engine_container = _engine_container(
        endpoint,
        variant_config=variant_config,
        resolved=resolved,
        compute=compute,
        port=port,
        health=health,
        config=config,
    )
    volumes: list[dict[str, Any]] = [{"name": "repository", "emptyDir": {}}]
    if recipe.shared_memory and compute.num_accelerators > 1 and compute.accelerator is Accelerator.GPU:
        volumes.append({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": recipe.shared_memory}})
        engine_container["volumeMounts"].append({"name": "shm", "mountPath": "/dev/shm"})  # noqa: S108 (a mount point in the pod)
    secret_digest = hmac.new(config.hash_key, orjson.dumps(secret_data), hashlib.sha256).hexdigest()[:16]
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "initContainers": [
            _fetch_container(endpoint, recipe=recipe, model_path=variant_config.get("modelPath"), config=config)
        ],
        "containers": [engine_container],
        "volumes": volumes,
    }
    if compute.placement.node_selector:
        pod_spec["nodeSelector"] = dict(compute.placement.node_selector)
    if compute.placement.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in compute.placement.tolerations]
    if pull_secret is not None:
        pod_spec["imagePullSecrets"] = [{"name": f"{name}-registry"}]
    objects.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata(name),
            "spec": {
                "replicas": endpoint.replicas,
                "selector": {"matchLabels": {ENDPOINT_ID: endpoint.id}},
                # Old replicas keep serving until new ones are Ready; a surge of one bounds the extra GPUs.
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "progressDeadlineSeconds": config.rollout_deadline_seconds,
                "revisionHistoryLimit": 3,
                "template": {
                    "metadata": {
                        "labels": dict(meta_labels),
                        "annotations": {"dais.dev/secrets-digest": secret_digest},
                    },
                    "spec": pod_spec,
                },
            },
        }
    )
    template = objects[-1]["spec"]["template"]
    template["metadata"]["annotations"][TEMPLATE_HASH] = content_hash(template)
    for obj in objects:
        obj["metadata"]["annotations"][HASH] = content_hash(obj)
    return objects


def content_hash(obj: dict[str, Any]) -> str:
    """Digest of a desired object (or pod template), ignoring its own hash annotations."""
    meta = obj["metadata"]
    annotations = {k: v for k, v in meta.get("annotations", {}).items() if k not in (HASH, TEMPLATE_HASH)}
    body = {**obj, "metadata": {**meta, "annotations": annotations}}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:20]


# -- the engine container --------------------------------------------------------------------------------


def _engine_container(
    endpoint: EndpointView,
    *,
    variant_config: dict[str, Any],
    resolved: ResolvedEngine,
    compute: HardwareRow,
    port: int,
    health: str,
    config: BuildConfig,
) -> dict[str, Any]:
    model = endpoint.spec["model"]
    recipe = resolved.recipe
    model_path = variant_config.get("modelPath")
    values = {
        "modelDir": REPOSITORY,
        "modelFile": f"{REPOSITORY}/{model_path}" if model_path else REPOSITORY,
        "repository": model["repository"],
        "revision": endpoint.revision,
        "port": str(port),
        "gpus": str(resolved.gpus),
        "task": model.get("task") or "",
        "tensorParallelSize": str(resolved.tensor_parallel),
        "dataParallelSize": str(resolved.data_parallel),
    }
    args = [_fill(a, values) for a in recipe.args]
    if resolved.gpus:
        args += [_fill(a, values) for a in recipe.gpu_args]
    for knob, flag in recipe.options.items():
        value = variant_config.get(knob)
        if value is True:
            args.append(flag)
        elif value is not None and value is not False:
            args += [flag, str(value)]
    args += list(model.get("args") or [])
    env = {k: _fill(v, values) for k, v in recipe.env.items()}
    env.update(model.get("env") or {})
    startup_period = 5
    container: dict[str, Any] = {
        "name": ENGINE_CONTAINER,
        "image": resolved.image,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
        "envFrom": [{"secretRef": {"name": object_name(endpoint), "optional": True}}],
        "resources": _resources(compute),
        # The platform contract: readiness polled every second; 503 until the model is loaded.
        "readinessProbe": {
            "httpGet": {"path": health, "port": "http"},
            "periodSeconds": 1,
            "timeoutSeconds": 1,
            "failureThreshold": 3,
        },
        # Big models load for many minutes: the startup probe holds off restarts until the deadline.
        "startupProbe": {
            "httpGet": {"path": health, "port": "http"},
            "periodSeconds": startup_period,
            "timeoutSeconds": 1,
            "failureThreshold": math.ceil(config.startup_deadline_seconds / startup_period),
        },
        "volumeMounts": [{"name": "repository", "mountPath": REPOSITORY}],
    }
    command = model.get("command") or recipe.command
    if command:
        container["command"] = list(command)
    if args:
        container["args"] = args
    return container


def _fetch_container(
    endpoint: EndpointView, *, recipe: EngineDefaults, model_path: str | None, config: BuildConfig
) -> dict[str, Any]:
    """The contract of ``dais model fetch``: fill /repository with the pinned revision, resumable, confined."""
    model = endpoint.spec["model"]
    args = ["model", "fetch", "--repo", model["repository"], "--revision", endpoint.revision, "--dest", REPOSITORY]
    if recipe.needs_model_file and model_path:
        args += ["--include", str(model_path)]
    env = [
        {
            "name": "HF_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": object_name(endpoint), "key": "HF_TOKEN", "optional": True}},
        },
        {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
    ]
    if config.hub_url:
        env.append({"name": "HF_ENDPOINT", "value": config.hub_url})
    return {
        "name": FETCH_CONTAINER,
        "image": config.fetch_image,
        "command": ["dais"],
        "args": args,
        "env": env,
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "volumeMounts": [{"name": "repository", "mountPath": REPOSITORY}],
        # fetch writes its reason for failing to the termination log; the status shows it
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _resources(compute: HardwareRow) -> dict[str, Any]:
    """Requests equal limits (Guaranteed QoS): an inference replica owns its slice of the node."""
    memory = compute.memory_gb
    amounts: dict[str, str] = {"memory": f"{int(memory)}Gi" if memory == int(memory) else f"{round(memory * 1024)}Mi"}
    if compute.num_cpus:
        amounts["cpu"] = str(compute.num_cpus)
    if compute.accelerator is Accelerator.GPU:
        amounts[GPU_RESOURCE] = str(compute.num_accelerators)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _pull_secret(config: dict[str, Any], endpoint: EndpointView) -> dict[str, Any] | None:
    creds = config.get("credentials")
    if not creds or not config.get("url"):
        return None
    registry = _registry_of(str(config["url"]))
    username = str(creds["username"])
    password = endpoint.registry_password or ""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"auths": {registry: {"username": username, "password": password, "auth": auth}}}


def _registry_of(image: str) -> str:
    """The registry host of an image reference, as the kubelet matches it (Docker Hub when none is named)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "https://index.docker.io/v1/"


def _fill(template: str, values: dict[str, str]) -> str:
    try:
        return template.format_map(values)
    except KeyError as exc:
        raise PermanentError(f"engine catalog: unknown placeholder {exc} in {template!r}") from None


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()
