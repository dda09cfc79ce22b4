"""Hardware, engine and model catalogs: data loaded from YAML, never code.

The hardware catalog is a tree vendor → region → computes. A compute row is keyed by
(vendor, region, accelerator, instanceType, instanceSize); its ``id`` is
``{vendor}-{region}-{instanceType}-{instanceSize}`` as on the hosted product. In the YAML, an instance
type lists its sizes with a multiplier over per-unit figures, so the file stays short and readable.

The model catalog is a curated list of models, each with one or more recipes (an accelerator, an engine and
Dais's defaults for the endpoint a deploy creates). It is validated strictly when loaded: an unknown key, a
duplicate ``publicId`` or an engine the engine catalog cannot run on the recipe's accelerator stops the load
with a ``CatalogError`` naming the entry and the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.domain.enums import Accelerator, EndpointType, ImageVariant
from core.domain.spec import EnvMap, Scaling, check_repository, check_revision

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


# -- model catalog -------------------------------------------------------------------------------------


class CatalogEngine(StrEnum):
    """A recipe's ``engineType``, spelled as the client's ``--engine`` values."""

    LLAMACPP = "llamacpp"
    VLLM = "vllm"
    TGI = "tgi"
    TEI = "tei"
    SGLANG = "sglang"
    HF_SERVE = "hf-serve"
    TGI_NEURON = "tgi-neuron"
    VLLM_NEURON = "vllm-neuron"

    @property
    def variant(self) -> ImageVariant:
        """The ``model.image`` key this engine is deployed as."""
        return _ENGINE_VARIANTS[self]


_ENGINE_VARIANTS = {
    CatalogEngine.LLAMACPP: ImageVariant.LLAMACPP,
    CatalogEngine.VLLM: ImageVariant.VLLM,
    CatalogEngine.TGI: ImageVariant.TGI,
    CatalogEngine.TEI: ImageVariant.TEI,
    CatalogEngine.SGLANG: ImageVariant.SGLANG,
    CatalogEngine.HF_SERVE: ImageVariant.HF_SERVE,
    CatalogEngine.TGI_NEURON: ImageVariant.TGI_NEURON,
    CatalogEngine.VLLM_NEURON: ImageVariant.VLLM_NEURON,
}
# Keys of ``model.image.<variant>`` a recipe's ``options`` may set besides its engine's knobs.
COMMON_IMAGE_OPTIONS = frozenset({"url", "healthRoute", "port", "tensorParallelSize", "dataParallelSize"})
PUBLIC_ID_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _check_repo_id(repo_id: str) -> str:
    if repo_id.count("/") != 1:
        raise ValueError(f"repoId {repo_id!r} must be 'author/model', as on the Hub")
    return check_repository(repo_id)


class RecipeHardware(_Strict):
    """Where a recipe runs. What it leaves out, the deploy chooses: the cheapest row of the recipe's
    accelerator that holds the model (as ``GET /v2/recommendation`` would)."""

    vendor: str | None = Field(default=None, min_length=1, max_length=64)
    region: str | None = Field(default=None, min_length=1, max_length=64)
    instance_type: str | None = Field(default=None, alias="instanceType", min_length=1, max_length=64)
    instance_size: str | None = Field(default=None, alias="instanceSize", min_length=1, max_length=16)

    @model_validator(mode="after")
    def _pairs(self) -> Self:
        if self.region is not None and self.vendor is None:
            raise ValueError("region needs vendor: name both, or neither to let the deploy choose")
        if self.instance_size is not None and self.instance_type is None:
            raise ValueError("instanceSize needs instanceType: name both, or neither to let the deploy choose")
        return self

    @property
    def pinned(self) -> bool:
        """Names one instance exactly (type and size): no sizing against the model."""
        return self.instance_type is not None and self.instance_size is not None

    def admits(self, row: HardwareRow) -> bool:
        pins = (
            (self.vendor, row.vendor),
            (self.region, row.region),
            (self.instance_type, row.instance_type),
            (self.instance_size, row.instance_size),
        )
        return all(wanted is None or wanted == have for wanted, have in pins)


class RecipeScaling(_Strict):
    """The endpoint's scaling; by default it scales to zero after 15 idle minutes and up to one replica."""

    min_replica: int = Field(default=0, ge=0, alias="minReplica")
    max_replica: int = Field(default=1, ge=1, alias="maxReplica")
    scale_to_zero_timeout: int | None = Field(default=15, ge=1, alias="scaleToZeroTimeout")

    @model_validator(mode="before")
    @classmethod
    def _no_default_timeout_above_zero(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and "scaleToZeroTimeout" not in data
            and "scale_to_zero_timeout" not in data
            and (data.get("minReplica") or data.get("min_replica") or 0) != 0
        ):
            return {**data, "scaleToZeroTimeout": None}  # the default applies to endpoints that may reach 0
        return data

    @model_validator(mode="after")
    def _as_the_spec_says(self) -> Self:
        try:
            Scaling.model_validate(self.model_dump(by_alias=True))
        except ValidationError as exc:
            raise ValueError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None
        return self


class CatalogRecipe(_Strict):
    """One tested way to deploy a catalog model: an accelerator, an engine and the endpoint's defaults."""

    public_id: str = Field(alias="publicId", pattern=PUBLIC_ID_PATTERN)
    accelerator: Accelerator
    engine_type: CatalogEngine = Field(alias="engineType")
    gguf_file: str | None = Field(default=None, alias="ggufFile", min_length=1, max_length=255)
    revision: Annotated[str, AfterValidator(check_revision)] | None = None
    hardware: RecipeHardware = Field(default_factory=RecipeHardware)
    scaling: RecipeScaling = Field(default_factory=RecipeScaling)
    type: EndpointType = EndpointType.AUTHENTICATED
    framework: str | None = Field(default=None, min_length=1, max_length=32)
    env: EnvMap = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _engine_fields(self) -> Self:
        if self.gguf_file is not None:
            if self.engine_type is not CatalogEngine.LLAMACPP:
                raise ValueError(
                    f"ggufFile is for engineType llamacpp, not {self.engine_type.value}: remove it or change the engine"
                )
            if not self.gguf_file.lower().endswith(".gguf"):
                raise ValueError(f"ggufFile {self.gguf_file!r} is not a .gguf file")
        if "modelPath" in self.options:
            raise ValueError("options.modelPath: give the GGUF file as the recipe's ggufFile instead")
        return self

    @property
    def variant(self) -> ImageVariant:
        return self.engine_type.variant

    def image(self) -> dict[str, dict[str, Any]]:
        """``model.image`` of the endpoint: the engine's variant with the recipe's options (and GGUF file)."""
        config = dict(self.options)
        if self.gguf_file is not None:
            config["modelPath"] = self.gguf_file
        return {self.variant.value: config}


class CatalogModel(_Strict):
    """A catalog entry: a Hub model and its recipes, the first being its default."""

    repo_id: Annotated[str, AfterValidator(_check_repo_id)] = Field(alias="repoId", max_length=200)
    model_name: str = Field(alias="modelName", min_length=1, max_length=200)
    author_name: str = Field(alias="authorName", min_length=1, max_length=200)
    license: str = Field(min_length=1, max_length=64)
    task: str = Field(min_length=1, max_length=64)
    created_at: datetime = Field(alias="createdAt")
    recipes: list[CatalogRecipe] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _names_from_repo_id(cls, data: Any) -> Any:
        """``modelName`` and ``authorName`` default to the two halves of ``repoId``."""
        if isinstance(data, dict) and isinstance(data.get("repoId"), str) and "/" in data["repoId"]:
            author, _, name = data["repoId"].partition("/")
            data = {"authorName": author, "modelName": name, **data}
        return data

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        """A date (``2026-01-15``) is its midnight; a time without a zone is UTC."""
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class _ModelCatalogFile(_Strict):
    models: list[CatalogModel] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        repos: dict[str, int] = {}
        recipes: dict[str, str] = {}
        for index, model in enumerate(self.models):
            where = f"models[{index}] ({model.repo_id})"
            first = repos.setdefault(model.repo_id.lower(), index)
            if first != index:
                raise ValueError(
                    f"{where}: repoId repeats models[{first}]: give each model one entry with all its recipes"
                )
            for r_index, recipe in enumerate(model.recipes):
                owner = recipes.setdefault(recipe.public_id, f"{where}.recipes[{r_index}]")
                if owner != f"{where}.recipes[{r_index}]":
                    raise ValueError(
                        f"{where}: recipes[{r_index}].publicId {recipe.public_id!r} is already used by {owner}: "
                        "publicIds must be unique across the file"
                    )
        return self


class CatalogError(ValueError):
    """A catalog file that cannot be used; the message names the file, the entry and the field."""


def _normalized(text: str) -> str:
    """``Apache 2.0`` and ``apache-2.0`` are the same license: compare letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


class ModelCatalog:
    """Immutable lookup over the catalog's models and recipes, in file order."""

    def __init__(self, models: Sequence[CatalogModel]) -> None:
        self.models = list(models)
        self._by_repo = {m.repo_id.lower(): m for m in self.models}  # Hub ids are case-insensitive
        self._by_recipe = {r.public_id: (m, r) for m in self.models for r in m.recipes}

    def model(self, repo_id: str) -> CatalogModel | None:
        return self._by_repo.get(repo_id.lower())

    def recipe(self, public_id: str) -> tuple[CatalogModel, CatalogRecipe] | None:
        return self._by_recipe.get(public_id)

    def search(
        self,
        *,
        accelerator: Accelerator | None = None,
        engine: CatalogEngine | None = None,
        license: str | None = None,
        task: str | None = None,
        text: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[CatalogModel, list[CatalogRecipe]]]:
        """Models matching every filter given, each with its recipes for ``accelerator`` and ``engine`` (a model
        with none left out); ``text`` is a case-insensitive substring of the repo id, model or author name."""
        found: list[tuple[CatalogModel, list[CatalogRecipe]]] = []
        for model in self.models:
            if license is not None and _normalized(model.license) != _normalized(license):
                continue
            if task is not None and model.task != task:
                continue
            names = (model.repo_id, model.model_name, model.author_name)
            if text and not any(text.lower() in name.lower() for name in names):
                continue
            recipes = [
                r
                for r in model.recipes
                if (accelerator is None or r.accelerator is accelerator) and (engine is None or r.engine_type is engine)
            ]
            if recipes:
                found.append((model, recipes))
        return found[:limit] if limit is not None else found


def parse_model_catalog(
    raw: Any, *, engines: EngineCatalog | None = None, source: str = "model catalog"
) -> ModelCatalog:
    """The catalog in ``raw`` (the YAML's content); with ``engines``, each recipe's engine must run on its
    accelerator and its options must be that engine's knobs."""
    try:
        parsed = _ModelCatalogFile.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(f"{source}: {_explain(exc, raw)}") from None
    if engines is not None:
        for index, model in enumerate(parsed.models):
            for r_index, recipe in enumerate(model.recipes):
                problem = _engine_problem(recipe, engines)
                if problem:
                    raise CatalogError(f"{source}: models[{index}] ({model.repo_id}): recipes[{r_index}].{problem}")
    return ModelCatalog(parsed.models)


def _engine_problem(recipe: CatalogRecipe, engines: EngineCatalog) -> str | None:
    defaults = engines.defaults(recipe.variant)
    if recipe.accelerator not in defaults.images and "url" not in recipe.options:
        runs_on = ", ".join(sorted(a.value for a in defaults.images)) or "no accelerator"
        return (
            f"engineType: {recipe.engine_type.value} has no {recipe.accelerator.value} image in the engine catalog "
            f"(it runs on {runs_on}): change the accelerator or the engine, or give options.url"
        )
    unknown = sorted(set(recipe.options) - set(defaults.options) - COMMON_IMAGE_OPTIONS)
    if unknown:
        known = ", ".join(sorted(set(defaults.options) | COMMON_IMAGE_OPTIONS))
        return f"options: {', '.join(unknown)} not a knob of {recipe.engine_type.value}: use one of {known}"
    return None


def _explain(exc: ValidationError, raw: Any) -> str:
    """The first errors, each as ``models[i] (repo/id): path: what is wrong``."""
    parts = []
    for error in exc.errors()[:5]:
        loc = list(error["loc"])
        where = ""
        if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
            entry = raw["models"][loc[1]] if isinstance(raw, dict) and isinstance(raw.get("models"), list) else None
            repo = entry.get("repoId") if isinstance(entry, dict) else None
            where = f"models[{loc[1]}]" + (f" ({repo})" if isinstance(repo, str) else "")
            loc = loc[2:]
        path = ""
        for part in loc:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        kind = error["type"]
        message = str(error["msg"]).removeprefix("Value error, ")
        if kind == "missing":
            message = "is required"
        elif kind == "extra_forbidden":
            message = "is not a field of the catalog: check its spelling, or remove it"
        elif kind != "value_error" and "input" in error:
            message = f"{message} (got {error['input']!r:.80})"
        parts.append(": ".join(p for p in (where, path, message) if p))
    more = len(exc.errors()) - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def load_model_catalog(path: Path | None, *, engines: EngineCatalog | None = None) -> ModelCatalog:
    """The catalog at ``path``, else the shipped one; a ``CatalogError`` says what to fix."""
    source = f"model catalog {path}" if path is not None else "shipped model catalog (core/domain/models.yaml)"
    try:
        raw = _read_yaml(path, "models.yaml")
    except OSError as exc:
        raise CatalogError(f"{source} cannot be read ({exc.strerror or exc}): fix DAIS_MODEL_CATALOG") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"{source} is not valid YAML: {exc}") from None
    return parse_model_catalog(raw, engines=engines, source=source)
