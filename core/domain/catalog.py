"""Hardware and engine catalogs: data loaded from YAML, never code.

The hardware catalog is a tree vendor → region → computes. A compute row is keyed by
(vendor, region, accelerator, instanceType, instanceSize); its ``id`` is
``{vendor}-{region}-{instanceType}-{instanceSize}`` as on the hosted product. In the YAML, an instance
type lists its sizes with a multiplier over per-unit figures, so the file stays short and readable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from core.domain.enums import Accelerator, ImageVariant

HardwareKey = tuple[str, str, str, str, str]  # vendor, region, accelerator, instanceType, instanceSize


class KubernetesPlacement(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    tolerations: list[dict[str, Any]] = Field(default_factory=list)


class HardwareRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    vendor: str
    region: str
    cluster: str
    accelerator: Accelerator
    instance_type: str
    instance_size: str
    architecture: str
    num_accelerators: int
    num_cpus: int | None
    memory_gb: float
    gpu_memory_gb: float | None
    price_per_hour: float
    status: str
    max_accelerators: int
    placement: KubernetesPlacement

    @property
    def quota_key(self) -> str:
        """Quota is per instance type in a region, across its sizes."""
        return f"{self.vendor}-{self.region}-{self.instance_type}"

    @property
    def key(self) -> HardwareKey:
        return (self.vendor, self.region, self.accelerator.value, self.instance_type, self.instance_size)


class HardwareCatalog:
    """Immutable lookup over compute rows, in catalog order."""

    def __init__(self, computes: list[HardwareRow]) -> None:
        self.computes = computes
        self._by_key = {c.key: c for c in computes}

    def find(self, key: HardwareKey) -> HardwareRow | None:
        return self._by_key.get(key)

    def near(self, vendor: str, region: str) -> list[HardwareRow]:
        return [c for c in self.computes if c.vendor == vendor and c.region == region]


_SIZE_STATUSES = {"available", "low_availability", "not_available", "reserved", "deprecated"}


def parse_hardware_catalog(raw: Mapping[str, Any], *, default_quota: int) -> HardwareCatalog:
    computes: list[HardwareRow] = []
    for vendor in raw.get("vendors", []):
        for region in vendor.get("regions", []):
            cluster = region.get("cluster", "default")
            for itype in region.get("instanceTypes", []):
                placement = KubernetesPlacement.model_validate(itype.get("kubernetes", {}))
                for size, spec in itype["sizes"].items():
                    overrides = spec if isinstance(spec, dict) else {"factor": spec}
                    figures = _size_figures(itype.get("unit", {}), overrides)
                    status = overrides.get("status", itype.get("status", "available"))
                    if status not in _SIZE_STATUSES:
                        raise ValueError(f"hardware catalog: unknown status {status!r} for {itype['name']}")
                    computes.append(
                        HardwareRow(
                            id=f"{vendor['name']}-{region['name']}-{itype['name']}-{size}",
                            vendor=vendor["name"],
                            region=region["name"],
                            cluster=cluster,
                            accelerator=Accelerator(itype["accelerator"]),
                            instance_type=itype["name"],
                            instance_size=size,
                            architecture=itype.get("architecture", itype["name"]),
                            num_accelerators=figures.get("numAccelerators") or 1,
                            num_cpus=figures.get("numCpus"),
                            memory_gb=figures.get("memoryGb") or 0,
                            gpu_memory_gb=figures.get("gpuMemoryGb"),
                            price_per_hour=round(figures.get("pricePerHour") or 0.0, 4),
                            status=status,
                            max_accelerators=int(itype.get("quota", default_quota)),
                            placement=placement,
                        )
                    )
    return HardwareCatalog(computes)


def _size_figures(unit: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A size's figures: the unit figures times its factor, then its explicit overrides."""
    factor = overrides.get("factor", 1)
    figures = {name: value * factor for name, value in unit.items() if value is not None}
    figures.update({k: v for k, v in overrides.items() if k not in ("factor", "status")})
    return figures


class LocalCommand(BaseModel):
    """How the local runtime runs an engine installed on this machine (``command``'s first word on PATH, or
    ``python -m module`` importable); placeholders as in ``args``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[str]
    args: list[str] = Field(default_factory=list)


class EngineDefaults(BaseModel):
    """One image variant's container recipe (see engines.yaml for the fields and placeholders)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    health_route: str = Field(default="/health", alias="healthRoute")
    port: int = 80
    images: dict[Accelerator, str] = Field(default_factory=dict)
    command: list[str] | None = None
    args: list[str] = Field(default_factory=list)
    gpu_args: list[str] = Field(default_factory=list, alias="gpuArgs")
    env: dict[str, str] = Field(default_factory=dict)
    options: dict[str, str] = Field(default_factory=dict)
    parallelism: Literal["tensor", "tensorData"] | None = None
    shared_memory: str | None = Field(default=None, alias="sharedMemory")
    needs_model_file: bool = Field(default=False, alias="needsModelFile")
    task_engines: dict[str, ImageVariant] = Field(default_factory=dict, alias="taskEngines")
    local: LocalCommand | None = None


class EngineCatalog:
    def __init__(self, engines: dict[ImageVariant, EngineDefaults]) -> None:
        self.engines = engines

    def defaults(self, variant: ImageVariant) -> EngineDefaults:
        return self.engines.get(variant, EngineDefaults())

    def health_route(self, spec: Mapping[str, Any]) -> str:
        """The stored spec's own health route, else its engine's default."""
        ((variant, config),) = spec["model"]["image"].items()
        route = config.get("healthRoute")
        return str(route) if route else self.defaults(ImageVariant(variant)).health_route

    def engine_for(self, variant: ImageVariant, *, task: str | None, accelerator: Accelerator) -> ImageVariant:
        """The engine that serves a variant: ``huggingface`` picks one by task when that engine runs on
        the accelerator, and otherwise stays the toolkit image."""
        picked = self.defaults(variant).task_engines.get(task or "")
        if picked is not None and accelerator in self.defaults(picked).images:
            return picked
        return variant

    def resolve(
        self, variant: ImageVariant, config: Mapping[str, Any], *, task: str | None, compute: HardwareRow
    ) -> ResolvedEngine:
        """What will run for this spec on this hardware; ``EngineError`` says why it cannot run."""
        engine = self.engine_for(variant, task=task, accelerator=compute.accelerator)
        recipe = self.defaults(engine)
        image = config.get("url") or recipe.images.get(compute.accelerator)
        if not image:
            runs_on = ", ".join(sorted(a.value for a in recipe.images)) or "no accelerator"
            raise EngineError(
                f"engine {engine.value} has no {compute.accelerator.value} image in the engine catalog (it runs on "
                f"{runs_on}): choose other hardware or give model.image.{variant.value}.url"
            )
        gpus = compute.num_accelerators if compute.accelerator is Accelerator.GPU else 0
        tensor = data = 1
        if recipe.parallelism is not None:
            devices = max(gpus, 1)
            data = int(config.get("dataParallelSize") or 1) if recipe.parallelism == "tensorData" else 1
            tensor = int(config.get("tensorParallelSize") or max(devices // data, 1))
            if tensor * data != devices:
                raise EngineError(
                    f"model.image.{variant.value}: tensorParallelSize ({tensor}) × dataParallelSize ({data}) must "
                    f"equal the instance's {devices} GPUs: change them or the instance size"
                )
        if recipe.needs_model_file and not config.get("modelPath"):
            raise EngineError(
                f"model.image.{variant.value}.modelPath is required: name the GGUF file to serve, "
                "e.g. 'model-q4_k_m.gguf'"
            )
        return ResolvedEngine(engine, recipe, str(image), gpus, tensor, data)


class EngineError(ValueError):
    """A spec that cannot run on its hardware with this engine catalog."""


@dataclass(frozen=True, slots=True)
class ResolvedEngine:
    engine: ImageVariant
    recipe: EngineDefaults
    image: str
    gpus: int
    tensor_parallel: int
    data_parallel: int


def parse_engine_catalog(raw: Mapping[str, Any]) -> EngineCatalog:
    engines = {ImageVariant(k): EngineDefaults.model_validate(v) for k, v in raw.get("engines", {}).items()}
    return EngineCatalog(engines)


def _read_yaml(path: Path | None, default_name: str) -> Any:
    if path is None:
        text = (resources.files("core.domain") / default_name).read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    return yaml.safe_load(text) or {}


def load_hardware_catalog(path: Path | None, *, default_quota: int, machine: bool = False) -> HardwareCatalog:
    """The catalog at ``path``; else this machine, detected, for the local runtime (``machine``); else the
    shipped one."""
    if path is None and machine:
        from core.domain import machine as this

        return parse_hardware_catalog(this.catalog(), default_quota=default_quota)
    return parse_hardware_catalog(_read_yaml(path, "hardware.yaml"), default_quota=default_quota)


def load_engine_catalog(path: Path | None) -> EngineCatalog:
    return parse_engine_catalog(_read_yaml(path, "engines.yaml"))
