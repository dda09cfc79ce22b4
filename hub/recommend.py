"""Which hardware rows hold a model, cheapest first (``GET /v2/recommendation`` and ``dais recommend``)."""

from __future__ import annotations

from typing import Any

from core.domain.catalog import HardwareCatalog, HardwareRow
from core.domain.fit import capacity_bytes, estimate_weights, fits, needed_bytes, pick_gguf
from core.domain.spec import check_repository, check_revision
from hub.client import HubClient


def parse_reference(reference: str) -> tuple[str, str | None]:
    """``org/model`` or ``org/model@revision``; raises ValueError naming the problem."""
    repository, _, revision = reference.partition("@")
    return check_repository(repository), (check_revision(revision) if revision else None)


def recommend(
    reference: str,
    *,
    client: HubClient,
    hardware: HardwareCatalog,
    token: str | None,
    headroom: float,
    vendor: str | None = None,
    region: str | None = None,
) -> dict[str, Any]:
    repository, revision = parse_reference(reference)
    facts = client.model(repository, revision, token)
    ggufs = [f for f in facts.files if f.lower().endswith(".gguf")]
    only_gguf = ggufs and not any(f.endswith((".safetensors", ".bin", ".pt", ".pth")) for f in facts.files)
    gguf = pick_gguf(ggufs) if only_gguf else None
    weights = estimate_weights(safetensors_parameters=facts.safetensors_parameters, files=facts.files, gguf_file=gguf)
    if weights is None:
        raise ValueError(f"model {repository} lists no weights the Hub can size: nothing to recommend")
    needed = needed_bytes(weights, headroom)
    rows = [
        c
        for c in hardware.computes
        if (vendor is None or c.vendor == vendor)
        and (region is None or c.region == region)
        and c.status not in ("deprecated", "not_available")
        and fits(c, needed)
    ]
    rows.sort(key=lambda c: (c.price_per_hour, c.num_accelerators, c.id))
    return {
        "repository": repository,
        "revision": facts.sha,
        "task": facts.pipeline_tag,
        "library": facts.library,
        "gated": facts.gated,
        "weightBytes": weights.bytes,
        "weightSource": weights.source,
        "neededBytes": needed,
        "headroom": headroom,
        "ggufFile": gguf,
        "items": [_row(c) for c in rows],
    }


def _row(compute: HardwareRow) -> dict[str, Any]:
    return {
        "id": compute.id,
        "vendor": compute.vendor,
        "region": compute.region,
        "accelerator": compute.accelerator.value,
        "instanceType": compute.instance_type,
        "instanceSize": compute.instance_size,
        "numAccelerators": compute.num_accelerators,
        "memoryBytes": capacity_bytes(compute),
        "pricePerHour": compute.price_per_hour,
    }
