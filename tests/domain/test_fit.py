"""Memory fit, table-driven: weight bytes from Hub metadata, then the rows that hold them."""

from __future__ import annotations

import pytest

from core.domain.catalog import load_hardware_catalog
from core.domain.fit import (
    GIB,
    WeightEstimate,
    capacity_bytes,
    estimate_weights,
    fitting,
    needed_bytes,
    pick_gguf,
    weight_files,
)

HARDWARE = load_hardware_catalog(None, default_quota=16)


@pytest.mark.parametrize(
    ("parameters", "files", "gguf", "expected"),
    [
        pytest.param({"BF16": 7_000_000_000}, {}, None, WeightEstimate(14_000_000_000, "safetensors"), id="bf16"),
        pytest.param(
            {"I8": 7_000_000_000, "F16": 1_000_000}, {}, None, WeightEstimate(7_002_000_000, "safetensors"), id="int8"
        ),
        pytest.param({"I4": 8_000_000_000}, {}, None, WeightEstimate(4_000_000_000, "safetensors"), id="int4"),
        pytest.param(
            {"F32": 10},
            {"m-Q4_K_M.gguf": 4_000, "m-Q8_0.gguf": 8_000},
            "m-Q4_K_M.gguf",
            WeightEstimate(4_000, "gguf"),
            id="gguf-size-wins-for-llamacpp",
        ),
        pytest.param(
            None,
            {"pytorch_model.bin": 500, "model.safetensors": 400, "config.json": 1},
            None,
            WeightEstimate(400, "file sizes"),
            id="file-sizes-prefer-safetensors",
        ),
        pytest.param(None, {"pytorch_model.bin": 500, "config.json": 1}, None, WeightEstimate(500, "file sizes")),
        pytest.param(None, {"config.json": 1}, None, None, id="nothing-to-size"),
        pytest.param(None, {"model.safetensors": None}, None, None, id="sizes-unknown"),
    ],
)
def test_estimate_weights(
    parameters: dict[str, int] | None, files: dict[str, int | None], gguf: str | None, expected: WeightEstimate | None
) -> None:
    assert estimate_weights(safetensors_parameters=parameters, files=files, gguf_file=gguf) == expected


def test_weight_files_skip_pickles_next_to_safetensors() -> None:
    files = {"a.safetensors": 1, "b.bin": 1, "original/consolidated.pth": 1, "tokenizer.json": 1}
    assert weight_files(files) == ["a.safetensors"]


@pytest.mark.parametrize(
    ("files", "chosen"),
    [
        (["m-Q8_0.gguf", "m-Q4_K_M.gguf", "m-F16.gguf"], "m-Q4_K_M.gguf"),
        (["m-F16.gguf", "m-Q8_0.gguf"], "m-Q8_0.gguf"),
        (["mmproj-f16.gguf", "model.gguf"], "model.gguf"),
        (["config.json"], None),
    ],
)
def test_pick_gguf(files: list[str], chosen: str | None) -> None:
    assert pick_gguf(files) == chosen


def test_capacity_is_gpu_memory_times_gpus_or_ram() -> None:
    l4_x4 = HARDWARE.find(("aws", "us-east-1", "gpu", "nvidia-l4", "x4"))
    cpu_x4 = HARDWARE.find(("aws", "us-east-1", "cpu", "intel-spr", "x4"))
    assert l4_x4 is not None
    assert cpu_x4 is not None
    assert capacity_bytes(l4_x4) == 4 * 24 * GIB  # 24 GB per L4 × 4
    assert capacity_bytes(cpu_x4) == 8 * GIB


def test_fitting_rows_are_cheapest_first_and_all_fit() -> None:
    needed = needed_bytes(WeightEstimate(60 * GIB, "safetensors"), 0.25)  # 75 GiB
    rows = fitting(HARDWARE, vendor="aws", region="us-east-1", needed=needed)
    prices = [r.price_per_hour for r in rows]
    assert prices == sorted(prices)
    assert all(capacity_bytes(r) >= needed for r in rows)
    assert all(r.status != "deprecated" for r in rows)
    assert [r.id for r in rows[:3]] == [
        "aws-us-east-1-nvidia-a100-x1",  # 80 GiB at $2.5/h
        "aws-us-east-1-nvidia-l4-x4",  # 96 GiB at $3.2/h
        "aws-us-east-1-nvidia-a10g-x4",  # 96 GiB at $4/h
    ]
