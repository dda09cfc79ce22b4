"""Pure: what one endpoint's replicas run on this machine, and the plan that gets the processes there.

What runs is the engine the spec means when it is installed on this machine (``llama-server``, ``vllm``,
``text-generation-launcher``, ``text-embeddings-router``, ``python -m sglang.launch_server``: the engine
catalog's ``local`` commands), else Dais's own engine (``dais engine``), on the model fetched into the shared
cache (``DAIS_HOME/models/<repository>/<revision>``), one process per replica on a loopback port of its own. The
spec's env and secrets reach the process's environment (``MAX_CONCURRENCY`` among them: one request at a time
unless the endpoint says otherwise). A ``digest`` covers all of it: replicas of another digest are an old
version, replaced the way a rolling update replaces pods (new ones first; old ones stop once the new are
Ready, or at once when none of the old serves).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from controller.desired import EndpointView
from controller.errors import PermanentError
from core.domain.catalog import EngineCatalog
from core.domain.enums import ImageVariant

MODEL_DIR = "{modelDir}"
PORT = "{port}"
DAIS_ENGINE_HEALTH = "/health"


@dataclass(frozen=True, slots=True)
class LocalRun:
    repository: str
    revision: str
    include: tuple[str, ...]  # the files to fetch when not all (a GGUF repository's one file)
    command: tuple[str, ...]  # with MODEL_DIR and PORT to fill in
    env: dict[str, str]
    health_route: str
    digest: str

    @property
    def model_key(self) -> str:
        """The model's place in the shared cache, under DAIS_HOME/models."""
        return f"{self.repository}/{self.revision}"


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """One replica as the supervisor sees it."""

    id: str
    digest: str
    ready: bool
    exited: bool = False  # its process ended and will not be restarted (given up)


@dataclass(frozen=True, slots=True)
class ReplicaPlan:
    start: int = 0
    stop: tuple[str, ...] = field(default_factory=tuple)


def local_run(
    view: EndpointView, *, python: str, engines: EngineCatalog, installed: frozenset[ImageVariant] = frozenset()
) -> LocalRun:
    """What the replicas run: the engine the spec names (or the Hub resolution picked, or the catalog's engine
    for the task) when it is ``installed`` on this machine, else Dais's own engine, which speaks the routes of
    all of them. ``PermanentError`` for what cannot run without a container runtime."""
    model = view.spec["model"]
    ((variant, config),) = model["image"].items()
    if variant == "custom" or config.get("url"):
        raise PermanentError(
            "a container image cannot run on the local runtime (no container runtime here): use an engine from "
            "the catalog, or run Dais on Kubernetes (DAIS_CONTROLLER__KUBECONFIG)"
        )
    model_path = config.get("modelPath") or view.model_path
    task = model.get("task") or "text-generation"
    values = {
        "modelDir": MODEL_DIR,
        "modelFile": f"{MODEL_DIR}/{model_path}" if model_path else MODEL_DIR,
        "repository": model["repository"],
        "port": PORT,
        "task": task,
    }
    engine = _engine(variant, view.engine, task, engines)
    recipe = engines.defaults(engine)
    if recipe.local is not None and engine in installed:
        command = tuple(_fill(part, values) for part in (*recipe.local.command, *recipe.local.args))
        if command[0].startswith("python"):
            command = (python, *command[1:])  # the interpreter that found the module
        health = str(config.get("healthRoute") or recipe.health_route)
    else:
        command = (python, "-m", "dais", "engine", "--model", values["modelFile"], "--port", PORT, "--host")
        command += ("127.0.0.1", "--model-id", model["repository"], "--task", task)
        health = DAIS_ENGINE_HEALTH
    env = {**(model.get("env") or {}), **view.secrets}
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    include = (str(model_path),) if model_path else ()
    digest_of: dict[str, Any] = {
        "repository": model["repository"],
        "revision": view.revision,
        "include": include,
        "command": command,
        "env": env,
        "args": model.get("args") or [],
    }
    digest = hashlib.sha256(orjson.dumps(digest_of, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return LocalRun(
        repository=model["repository"],
        revision=view.revision,
        include=include,
        command=(*command, *(model.get("args") or [])),
        env=env,
        health_route=health,
        digest=digest,
    )


def _engine(variant: str, resolved: str | None, task: str, engines: EngineCatalog) -> ImageVariant:
    """The engine a spec means: the Hub resolution's (llama.cpp for a GGUF), else the variant, where the
    ``huggingface`` variant means the catalog's engine for the task."""
    if resolved:
        return ImageVariant(resolved)
    chosen = ImageVariant(variant)
    return engines.defaults(chosen).task_engines.get(task, chosen)


def _fill(template: str, values: Mapping[str, str]) -> str:
    for name, value in values.items():
        if name not in ("modelDir", "port"):  # those two the runtime fills, per replica
            template = template.replace("{" + name + "}", value)
    return template


def plan_replicas(replicas: Sequence[ReplicaView], *, digest: str, wanted: int) -> ReplicaPlan:
    """How many to start and which to stop so that ``wanted`` replicas of ``digest`` run, old ones serving
    until the new are Ready."""
    current = [r for r in replicas if r.digest == digest]
    old = [r for r in replicas if r.digest != digest]
    # Extra current replicas go, those not Ready first (and the newest of those, listed last).
    spare = sorted(current, key=lambda r: r.ready)[: max(0, len(current) - wanted)]
    keep = [r for r in current if r not in spare]
    stop = [r.id for r in spare]
    new_ready = sum(1 for r in keep if r.ready)
    if wanted == 0 or new_ready >= wanted or not any(r.ready for r in old):
        stop += [r.id for r in old]
    return ReplicaPlan(start=max(0, wanted - len(keep)), stop=tuple(stop))


GIB = 2**30


def memory_wait(*, need: int, count: int, promised: Mapping[str, int], capacity: int) -> tuple[int, str | None]:
    """How many of ``count`` new replicas needing ``need`` bytes each fit beside the memory ``promised`` to other
    endpoints (by label), within ``capacity``; and, when not all do, the message that says what holds it."""
    free = capacity - sum(promised.values())
    fits = max(0, min(count, free // need)) if need > 0 else count
    if fits == count:
        return fits, None
    holders = ", ".join(
        f"{label} ({size / GIB:.1f} GiB)" for label, size in sorted(promised.items(), key=lambda i: -i[1])
    )
    held = (
        f"{sum(promised.values()) / GIB:.1f} of {capacity / GIB:.1f} GiB are promised to {holders}" if promised else ""
    )
    return fits, (
        f"waiting for memory: a replica needs about {need / GIB:.1f} GiB"
        + (f"; {held}" if held else f", more than this machine's {capacity / GIB:.1f} GiB")
        + ": scale one of them down or to zero, or choose a smaller model or quantization"
    )
