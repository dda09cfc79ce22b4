"""Does a model fit a hardware row? Pure arithmetic over Hub metadata and the catalog.

Weight bytes come, in order of trust, from the GGUF file's size (llama.cpp serves exactly that file), from
safetensors metadata (parameter count per dtype × the dtype's size, so quantized int8/int4-packed weights
count as what they are), or from the sizes of the weight files. A row fits when its memory — GPU memory ×
GPUs, or RAM for CPU rows — holds the weights plus a headroom for KV cache and working memory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.domain.catalog import HardwareCatalog, HardwareRow
from core.domain.enums import Accelerator

GIB = 1024**3
# Bytes per element of the safetensors dtypes (https://github.com/huggingface/safetensors).
DTYPE_BYTES = {
    "F64": 8.0,
    "I64": 8.0,
    "U64": 8.0,
    "F32": 4.0,
    "I32": 4.0,
    "U32": 4.0,
    "F16": 2.0,
    "BF16": 2.0,
    "I16": 2.0,
    "U16": 2.0,
    "F8_E4M3": 1.0,
    "F8_E5M2": 1.0,
    "F8_E8M0": 1.0,
    "I8": 1.0,
    "U8": 1.0,
    "BOOL": 1.0,
    "F6_E2M3": 0.75,
    "F6_E3M2": 0.75,
    "F4": 0.5,
    "I4": 0.5,
    "U4": 0.5,
}
WEIGHT_FILE = re.compile(r"\.(safetensors|bin|pt|pth|ckpt|h5|msgpack|onnx|gguf)$")
GGUF_PREFERENCE = ("q4_k_m", "q4_k_s", "q5_k_m", "q4_0", "q8_0")


@dataclass(frozen=True, slots=True)
class WeightEstimate:
    bytes: int
    source: str  # "gguf", "safetensors" or "file sizes"


def estimate_weights(
    *,
    safetensors_parameters: Mapping[str, int] | None,
    files: Mapping[str, int | None],
    gguf_file: str | None = None,
) -> WeightEstimate | None:
    """None when the Hub told us nothing usable (then no fit check is possible)."""
    if gguf_file is not None and files.get(gguf_file):
        return WeightEstimate(int(files[gguf_file] or 0), "gguf")
    if safetensors_parameters:
        total = sum(count * DTYPE_BYTES.get(dtype.upper(), 2.0) for dtype, count in safetensors_parameters.items())
        return WeightEstimate(int(total), "safetensors")
    weights = weight_files(files)
    sizes = [files[f] for f in weights]
    if weights and all(size is not None for size in sizes):
        return WeightEstimate(sum(size or 0 for size in sizes), "file sizes")
    return None


def weight_files(files: Mapping[str, int | None]) -> list[str]:
    """The files holding the weights; safetensors win over pickles when a repo has both."""
    weights = [f for f in files if WEIGHT_FILE.search(f) and not f.endswith(".gguf")]
    safetensors = [f for f in weights if f.endswith(".safetensors")]
    return sorted(safetensors or weights)


def pick_gguf(files: Sequence[str]) -> str | None:
    """The one GGUF file llama.cpp serves: a common 4-bit quantization if there is one, else the first."""
    ggufs = sorted(f for f in files if f.lower().endswith(".gguf") and "mmproj" not in f.lower())
    for wanted in GGUF_PREFERENCE:
        for name in ggufs:
            if wanted in name.lower():
                return name
    return ggufs[0] if ggufs else None


def capacity_bytes(compute: HardwareRow) -> int:
    """A row's ``gpuMemoryGb`` is the instance's total (per-GPU memory × GPUs), as the catalog lists sizes."""
    if compute.accelerator is Accelerator.CPU or not compute.gpu_memory_gb:
        return int(compute.memory_gb * GIB)
    return int(compute.gpu_memory_gb * GIB)


def needed_bytes(weights: WeightEstimate, headroom: float) -> int:
    return int(weights.bytes * (1 + headroom))


def fits(compute: HardwareRow, needed: int) -> bool:
    return capacity_bytes(compute) >= needed


def fitting(
    catalog: HardwareCatalog, *, vendor: str, region: str, needed: int, accelerator: Accelerator | None = None
) -> list[HardwareRow]:
    """Rows of one vendor and region that hold ``needed`` bytes, cheapest first (deprecated rows left out)."""
    rows = [
        c
        for c in catalog.near(vendor, region)
        if fits(c, needed)
        and c.status not in ("deprecated", "not_available")
        and (accelerator is None or c.accelerator is accelerator)
    ]
    return sorted(rows, key=lambda c: (c.price_per_hour, c.num_accelerators, c.id))


def describe(compute: HardwareRow) -> str:
    return (
        f"{compute.accelerator.value}/{compute.instance_type}/{compute.instance_size} (${compute.price_per_hour:g}/h)"
    )


def gib(size: int) -> str:
    return f"{size / GIB:.1f} GiB"
