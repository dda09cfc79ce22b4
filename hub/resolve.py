"""Refuse what cannot work before any GPU is spent, and pin what will run.

``resolve`` turns a spec's model reference into a ``Resolution``: the commit sha to deploy (so a restart
never drifts to a newer commit of a branch), the task (the Hub's pipeline tag when the spec names none),
the engine the default ``huggingface`` image really runs (a GGUF-only repo → llama.cpp, with its one GGUF
file), and the weight size. It refuses, with a message naming the fix: a missing or inaccessible model, an
unknown revision, an engine that cannot serve the model, and hardware too small for it (naming the
cheapest rows that fit).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from core.domain.catalog import HardwareCatalog, HardwareRow
from core.domain.enums import ImageVariant
from core.domain.fit import capacity_bytes, describe, estimate_weights, fits, fitting, gib, needed_bytes, pick_gguf
from core.domain.spec import EndpointSpec
from hub.client import HubClient, HubError, ModelFacts

SHA = re.compile(r"^[0-9a-f]{40}$")
GENERATION_TASKS = frozenset({"text-generation", "text2text-generation", "image-text-to-text"})
TEI_TASKS = frozenset({"feature-extraction", "sentence-similarity", "text-classification", "text-ranking"})


@dataclass(frozen=True, slots=True)
class Resolution:
    sha: str | None  # None only when the Hub was unreachable and the policy is lenient
    task: str | None
    engine: str | None  # the engine the huggingface image runs, when the model decides it (llamacpp)
    model_path: str | None  # llama.cpp's GGUF file
    weight_bytes: int | None
    verified: bool  # checked against the Hub (False: deployed as given while the Hub was unreachable)

    def to_stored(self) -> dict[str, Any]:
        return {to_camel(k): v for k, v in asdict(self).items()}


def to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class Refused(Exception):
    """The spec cannot work: a 400 naming ``field`` and the fix."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class HubUnavailable(Exception):
    """The Hub could not be reached and the policy refuses to deploy unverified: a 503."""


def resolve(
    spec: EndpointSpec,
    *,
    compute: HardwareRow,
    hardware: HardwareCatalog,
    client: HubClient,
    token: str | None,
    headroom: float,
    lenient: bool,
) -> Resolution:
    model = spec.model
    try:
        facts = client.model(model.repository, model.revision, token)
    except HubError as exc:
        if exc.kind != "unavailable":
            field = "model.revision" if exc.kind == "bad_revision" else "model.repository"
            raise Refused(exc.message, field=field) from None
        if model.revision and SHA.fullmatch(model.revision):
            return Resolution(model.revision, model.task, None, _given_path(spec), None, verified=False)
        if lenient:
            return Resolution(None, model.task, None, _given_path(spec), None, verified=False)
        raise HubUnavailable(exc.message) from None
    task = model.task or facts.pipeline_tag
    engine, model_path = _engine(spec, facts, task)
    weights = estimate_weights(
        safetensors_parameters=facts.safetensors_parameters,
        files=facts.files,
        gguf_file=model_path if engine is ImageVariant.LLAMACPP else None,
    )
    if weights is not None and model.variant is not ImageVariant.CUSTOM:
        needed = needed_bytes(weights, headroom)
        if not fits(compute, needed):
            options = fitting(hardware, vendor=compute.vendor, region=compute.region, needed=needed)[:3]
            hint = (
                f"choose {', '.join(describe(c) for c in options)}"
                if options
                else f"no row in {compute.vendor}/{compute.region} is that large: pick a smaller or quantized model"
            )
            raise Refused(
                f"model {model.repository} needs about {gib(needed)} ({gib(weights.bytes)} of weights from "
                f"{weights.source}, plus {headroom:.0%} headroom) but {compute.id} has {_capacity(compute)}: {hint}",
                field="compute.instanceType",
            )
    chosen = None if engine is model.variant else engine.value
    return Resolution(facts.sha, task, chosen, model_path, weights.bytes if weights else None, verified=True)


def _engine(spec: EndpointSpec, facts: ModelFacts, task: str | None) -> tuple[ImageVariant, str | None]:
    """The engine that will serve the model, and the GGUF file for llama.cpp; refuses mismatches."""
    model = spec.model
    variant = model.variant
    config = model.image[variant.value]
    ggufs = [f for f in facts.files if f.lower().endswith(".gguf")]
    has_other_weights = any(f.endswith((".safetensors", ".bin", ".pt", ".pth")) for f in facts.files)
    if variant is ImageVariant.HUGGINGFACE and ggufs and not has_other_weights:
        variant = ImageVariant.LLAMACPP
    if variant is ImageVariant.LLAMACPP:
        wanted = (config.model_extra or {}).get("modelPath")
        if wanted and wanted not in facts.files:
            listed = ", ".join(sorted(ggufs)[:5]) or "none"
            raise Refused(
                f"model {model.repository} has no file {wanted!r}: name one of its GGUF files ({listed})",
                field="model.image.llamacpp.modelPath",
            )
        chosen = wanted or pick_gguf(ggufs)
        if not chosen:
            raise Refused(
                f"llama.cpp serves GGUF files and model {model.repository} has none: pick a GGUF repository "
                "(often named '<model>-GGUF') or another engine",
                field="model.image",
            )
        return variant, chosen
    if variant is ImageVariant.TEI and task in GENERATION_TASKS:
        raise Refused(
            f"TEI serves embeddings, reranking and classification, and model {model.repository} is {task}: "
            "use vLLM, TGI or SGLang (or the default huggingface image)",
            field="model.image",
        )
    if variant in (ImageVariant.VLLM, ImageVariant.TGI, ImageVariant.SGLANG) and task in TEI_TASKS - {
        "text-classification"
    }:
        raise Refused(
            f"{variant.value} serves text generation, and model {model.repository} is {task}: use TEI "
            "(or the default huggingface image)",
            field="model.image",
        )
    return variant, None


def _given_path(spec: EndpointSpec) -> str | None:
    config = spec.model.image[spec.model.variant.value]
    path = (config.model_extra or {}).get("modelPath")
    return str(path) if path else None


def _capacity(compute: HardwareRow) -> str:
    return gib(capacity_bytes(compute))
