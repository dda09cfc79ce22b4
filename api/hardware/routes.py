from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import ContextDep
from api.endpoint import service
from api.hardware.schemas import Providers
from api.responses import FastJSONResponse
from api.schemas import documented, errors

router = APIRouter(prefix="/v2", tags=["hardware"], default_response_class=FastJSONResponse)


@router.get(
    "/provider/{namespace}",
    response_model=None,
    responses={**documented(Providers, "Vendors, regions and computes, with the quota in use."), **errors(400, 403)},
)
def list_hardware(namespace: str, ctx: ContextDep) -> dict[str, Any]:
    """The hardware catalog as vendors → regions → computes, with the namespace's quota use per row."""
    with ctx.unit(read_only=True) as unit:
        unit.principal.require_namespace(namespace)
        used = service.hardware_usage(unit.session, namespace=namespace)
    state = ctx.state
    vendors: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for c in state.catalogs.hardware.computes:
        vendors.setdefault(c.vendor, {}).setdefault(c.region, []).append(
            {
                "id": c.id,
                "accelerator": c.accelerator.value,
                "instanceType": c.instance_type,
                "instanceSize": c.instance_size,
                "architecture": c.architecture,
                "numAccelerators": c.num_accelerators,
                "numCpus": c.num_cpus,
                "memoryGb": c.memory_gb,
                "gpuMemoryGb": c.gpu_memory_gb,
                "pricePerHour": c.price_per_hour,
                "status": c.status,
                "quota": {
                    "maxAccelerators": c.max_accelerators,
                    "usedAccelerators": used.get(c.quota_key, 0),
                },
            }
        )
    return {
        "vendors": [
            {
                "name": vendor,
                "regions": [{"name": region, "computes": rows} for region, rows in regions.items()],
            }
            for vendor, regions in vendors.items()
        ]
    }
