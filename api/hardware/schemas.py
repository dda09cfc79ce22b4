"""``GET /v2/provider/{namespace}``: the hardware catalog with the namespace's quota use."""

from __future__ import annotations

from api.schemas import Out
from core.domain.enums import Accelerator


class Quota(Out):
    max_accelerators: int
    used_accelerators: int


class ComputeRead(Out):
    id: str
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
    quota: Quota


class RegionRead(Out):
    name: str
    computes: list[ComputeRead]


class VendorRead(Out):
    name: str
    regions: list[RegionRead]


class Providers(Out):
    vendors: list[VendorRead]
