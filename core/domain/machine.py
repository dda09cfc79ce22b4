"""This machine, as a hardware catalog: what the local runtime offers (cores, memory, NVIDIA GPUs with their
memory), at price 0. Endpoints on the local runtime choose from it and are fit against it at create time."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VENDOR = REGION = "local"


@dataclass(frozen=True, slots=True)
class Gpu:
    name: str
    memory_gb: float


def nvidia_gpus() -> list[Gpu]:
    """The NVIDIA GPUs the driver shows (empty without a driver or ``nvidia-smi``)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in listed.splitlines():
        name, _, memory = line.rpartition(",")
        if name.strip():
            found.append(Gpu(name.strip(), round(float(memory) / 1024, 1) if memory.strip().isdigit() else 0.0))
    return found


def memory_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return 0.0


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU"


def catalog(*, cores: int | None = None, memory: float | None = None, gpus: list[Gpu] | None = None) -> dict[str, Any]:
    """The raw catalog (hardware.yaml's shape): ``local``/``local``, instance ``cpu`` (x1: the whole machine),
    and one instance per GPU model (x1: one GPU, xN: all N), every price 0."""
    cores = cores or os.cpu_count() or 1
    memory = memory if memory is not None else memory_gb()
    gpus = nvidia_gpus() if gpus is None else gpus
    instance_types: list[dict[str, Any]] = [
        {
            "name": "cpu",
            "accelerator": "cpu",
            "architecture": cpu_name(),
            "unit": {"numCpus": cores, "memoryGb": memory, "pricePerHour": 0},
            "sizes": {"x1": 1},
            "quota": 1 << 10,
        }
    ]
    by_model: dict[str, list[Gpu]] = {}
    for gpu in gpus:
        by_model.setdefault(gpu.name, []).append(gpu)
    for name, same in by_model.items():
        sizes = {"x1": {"factor": 1, "numCpus": cores, "memoryGb": memory}}
        if len(same) > 1:
            sizes[f"x{len(same)}"] = {"factor": len(same), "numCpus": cores, "memoryGb": memory}
        instance_types.append(
            {
                "name": re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"),
                "accelerator": "gpu",
                "architecture": name,
                "unit": {"numAccelerators": 1, "gpuMemoryGb": same[0].memory_gb, "pricePerHour": 0},
                "sizes": sizes,
                "quota": 1 << 10,
            }
        )
    return {"vendors": [{"name": VENDOR, "regions": [{"name": REGION, "instanceTypes": instance_types}]}]}
