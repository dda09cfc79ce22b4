from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import ContextDep
from api.endpoint import service
from api.errors import BadRequest, NotFound, ServiceUnavailable
from api.recommendation.schemas import Recommendation
from api.responses import FastJSONResponse
from api.schemas import documented, errors
from core.domain.catalog import EngineCatalog
from core.domain.enums import Accelerator, ImageVariant
from hub.client import HubError
from hub.recommend import recommend

router = APIRouter(prefix="/v2", tags=["hub"], default_response_class=FastJSONResponse)


@router.get(
    "/recommendation",
    response_model=None,
    responses={**documented(Recommendation, "Rows that hold the model, cheapest first."), **errors(400, 403, 404)},
)
def recommendation(
    ctx: ContextDep,
    repository_ref: Annotated[str, Query(alias="repository", max_length=400, description="org/model[@revision]")],
    vendor: Annotated[str | None, Query(max_length=64)] = None,
    region: Annotated[str | None, Query(max_length=64)] = None,
    namespace: Annotated[str | None, Query(max_length=64, description="Use this namespace's Hub token")] = None,
) -> dict[str, Any]:
    """Hardware rows that hold the model (weights plus headroom), cheapest first."""
    with ctx.unit(read_only=True) as unit:
        token = None
        if namespace is not None:
            unit.principal.require_namespace(namespace)
            token = service.hub_token(unit.session, namespace=namespace, box=ctx.state.box)
    hub = ctx.state.hub
    try:
        found = recommend(
            repository_ref,
            client=hub.client,
            hardware=hub.hardware,
            token=token,
            headroom=hub.headroom,
            vendor=vendor,
            region=region,
        )
    except ValueError as exc:
        raise BadRequest(f"repository: {exc}", fields=[{"field": "repository", "message": str(exc)}]) from None
    except HubError as exc:
        if exc.kind == "unavailable":
            raise ServiceUnavailable(exc.message) from None
        if exc.kind == "not_found":
            raise NotFound(exc.message) from None
        raise BadRequest(exc.message, fields=[{"field": "repository", "message": exc.message}]) from None
    return {**found, "engine": suggested_engine(found, ctx.state.catalogs.engines)}


def suggested_engine(found: dict[str, Any], engines: EngineCatalog) -> str:
    """llamacpp for GGUF files; else what the huggingface variant runs for the task on the cheapest fitting row."""
    if found["ggufFile"]:
        return ImageVariant.LLAMACPP.value
    rows = found["items"]
    accelerator = Accelerator(rows[0]["accelerator"]) if rows else Accelerator.CPU
    return engines.engine_for(ImageVariant.HUGGINGFACE, task=found["task"], accelerator=accelerator).value
