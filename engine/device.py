"""Which device a model runs on: CUDA, then Metal, then CPU, and why, so an unexpected CPU fallback explains
itself (no driver, or a backend built for CPU only)."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass

from core.domain.machine import nvidia_gpus


@dataclass(frozen=True, slots=True)
class Device:
    kind: str  # "cuda" | "metal" | "cpu"
    name: str
    why: str  # one sentence for the start-up log and the status message

    @property
    def gpu(self) -> bool:
        return self.kind != "cpu"


def cuda_gpus() -> list[str]:
    """The NVIDIA GPUs the driver shows, by name (empty without a driver)."""
    return [gpu.name for gpu in nvidia_gpus()]


def apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def choose(*, backend: str, supports: frozenset[str], wanted: str | None = None) -> Device:
    """The first of CUDA, Metal and CPU that is present and that ``backend`` was built for (``supports``);
    ``wanted`` (``DAIS_ENGINE_DEVICE``) forces one, and an impossible force is an error that says why."""
    wanted = (wanted or os.environ.get("DAIS_ENGINE_DEVICE") or "").lower() or None
    gpus = cuda_gpus()
    cores = os.cpu_count() or 1
    present = {"cuda": bool(gpus), "metal": apple_silicon(), "cpu": True}
    if wanted is not None:
        if wanted not in present:
            raise ValueError(f"device {wanted!r} is not one of cuda, metal, cpu")
        if not present[wanted]:
            raise ValueError(f"device {wanted} was asked for, but this machine has none")
        if wanted not in supports:
            raise ValueError(f"device {wanted} was asked for, but the {backend} backend here is built for CPU only")
    skipped = []
    for kind in ("cuda", "metal"):
        if wanted not in (None, kind):
            continue
        if not present[kind]:
            skipped.append("no NVIDIA driver or GPU" if kind == "cuda" else "not Apple silicon")
        elif kind not in supports:
            what = f"{len(gpus)} CUDA GPU(s) ({', '.join(gpus)})" if kind == "cuda" else "Metal"
            skipped.append(
                f"{what} present, but the installed {backend} is built for CPU only: install its {kind} build"
            )
        else:
            name = ", ".join(gpus) if kind == "cuda" else platform.machine()
            return Device(kind, name, f"{kind.upper() if kind == 'cuda' else 'Metal'}: {name}")
    return Device("cpu", f"{cores} cores", f"CPU ({cores} cores): " + "; ".join(skipped or ["asked for"]))
