"""``/api/v1/catalog/...`` (huggingface_hub ≥ 2) and ``/api/catalog/...`` (≤ 1.33): the model catalog.

Point the client's ``huggingface_hub.constants.INFERENCE_CATALOG_ENDPOINT`` at ``{DAIS}/api/v1/catalog`` (or
``{DAIS}/api/catalog`` for ≤ 1.33). The catalog file is loaded once per process, at start-up: a broken one stops
the start naming the entry and the field to fix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from api.catalog import service
from api.catalog.schemas import CatalogList, Deployed, LegacyDeploy, ModelDeploy, RecipeDeploy, RepoList
from api.deps import AppState, ContextDep, RequestContext
from api.endpoint import service as endpoints
from api.endpoint.hub_calls import Answers, with_hub
from api.endpoint.render import render
from api.errors import BadRequest
from api.responses import FastJSONResponse
from api.schemas import documented, errors
from core.db.models import Endpoint
from core.domain.catalog import CatalogEngine, CatalogModel, CatalogRecipe, ModelCatalog
from core.domain.enums import Accelerator
from core.domain.timefmt import to_client_time


async def _catalog(request: Request) -> ModelCatalog:
    state: AppState = request.app.state.dais
    return state.catalogs.models


CatalogDep = Annotated[ModelCatalog, Depends(_catalog)]
router = APIRouter(prefix="/api", tags=["catalog"], default_response_class=FastJSONResponse)
DEPLOYED = {**documented(Deployed, "The endpoint created, with its status."), **errors(400, 403, 404, 409)}


@router.get(
    "/v1/catalog/list",
    response_model=None,
    responses={**documented(CatalogList, "The matching models."), **errors(400, 403)},
)
def list_catalog(
    ctx: ContextDep,
    catalog: CatalogDep,
    accelerator: Annotated[Accelerator | None, Query(description="Models with a recipe for it.")] = None,
    engine: Annotated[
        str | None, Query(max_length=32, description="Models with a recipe for it (llamacpp, vllm, tei, …).")
    ] = None,
    license_: Annotated[
        str | None, Query(alias="license", max_length=64, description="e.g. apache-2.0 (or Apache 2.0).")
    ] = None,
    task: Annotated[str | None, Query(max_length=64, description="e.g. text-generation.")] = None,
    search: Annotated[str | None, Query(max_length=200, description="Part of the repo id, model or author.")] = None,
    limit: Annotated[int | None, Query(ge=1, le=10_000, description="At most this many models.")] = None,
) -> dict[str, Any]:
    """Catalog models matching every filter given, in catalog order, each with its recipes for ``accelerator``
    and ``engine`` (the first recipe is the one a deploy by repo id picks). Any valid token may list."""
    with ctx.unit(read_only=True):
        pass  # authenticates the caller
    found = catalog.search(
        accelerator=accelerator,
        engine=_engine(engine),
        license=license_,
        task=task,
        text=search,
        limit=limit,
    )
    return {"items": [_item(model, recipes) for model, recipes in found]}


@router.post("/v1/catalog/model/{repo_id:path}/deploy", responses=DEPLOYED)
def deploy_model(repo_id: str, body: ModelDeploy, ctx: ContextDep, catalog: CatalogDep) -> Response:
    """Create an endpoint from a catalog model: its first recipe for ``accelerator`` and ``ggufFile``, else its
    first recipe this installation has hardware for. Everything else is ``POST /v2/endpoint/{namespace}``'s:
    the same checks, quota and audit event; a name already taken is 409."""

    def pick() -> tuple[CatalogModel, CatalogRecipe]:
        model = service.find_model(catalog, repo_id)
        hardware = ctx.state.catalogs.hardware
        return model, service.pick_recipe(
            model, accelerator=body.accelerator, gguf_file=body.gguf_file, hardware=hardware
        )

    return _deploy(ctx, namespace=body.namespace, name=body.config.name if body.config else None, pick=pick)


@router.post("/v1/catalog/recipe/{recipe_id}/deploy", responses=DEPLOYED)
def deploy_recipe(recipe_id: str, body: RecipeDeploy, ctx: ContextDep, catalog: CatalogDep) -> Response:
    """Create an endpoint from exactly this recipe (its ``publicId`` in the listing)."""
    return _deploy(
        ctx,
        namespace=body.namespace,
        name=body.config.name if body.config else None,
        pick=lambda: service.find_recipe(catalog, recipe_id),
    )


@router.get(
    "/catalog/repo-list",
    response_model=None,
    responses={**documented(RepoList, "Every catalog model's id."), **errors(403)},
)
def legacy_repo_list(ctx: ContextDep, catalog: CatalogDep) -> dict[str, Any]:
    """huggingface_hub ≤ 1.33's listing: the repo ids of the catalog, in catalog order."""
    with ctx.unit(read_only=True):
        pass  # authenticates the caller
    return {"models": [model.repo_id for model in catalog.models]}


@router.post("/catalog/deploy", responses=DEPLOYED)
def legacy_deploy(body: LegacyDeploy, ctx: ContextDep, catalog: CatalogDep) -> Response:
    """huggingface_hub ≤ 1.33's deploy: as ``POST /api/v1/catalog/model/{repoId}/deploy``."""

    def pick() -> tuple[CatalogModel, CatalogRecipe]:
        model = service.find_model(catalog, body.repo_id)
        hardware = ctx.state.catalogs.hardware
        return model, service.pick_recipe(model, accelerator=body.accelerator, gguf_file=None, hardware=hardware)

    return _deploy(ctx, namespace=body.namespace, name=body.endpoint_name, pick=pick)


def _deploy(
    ctx: RequestContext, *, namespace: str, name: str | None, pick: Callable[[], tuple[CatalogModel, CatalogRecipe]]
) -> Response:
    """The caller must reach ``namespace`` before anything about the catalog is answered (403 before 404)."""

    def run(answers: Answers) -> Endpoint:
        with ctx.unit() as unit:
            unit.principal.require_namespace(namespace)
            model, recipe = pick()
            return service.deploy(
                unit.session,
                namespace=namespace,
                model=model,
                recipe=recipe,
                name=name,
                catalogs=ctx.state.catalogs,
                box=ctx.state.box,
                hub=ctx.state.hub,
                answers=answers,
                ctx=unit.audit,
                now=unit.now,
            )

    return _deployed(ctx, with_hub(run, what=f"the deploy to {namespace}"))


def _deployed(ctx: RequestContext, endpoint: Endpoint) -> Response:
    """``{"endpoint": EWS}``, the endpoint rendered as every /v2 route renders it."""
    body = b'{"endpoint":' + render(endpoint, None, engines=ctx.state.catalogs.engines) + b"}"
    return Response(body, media_type="application/json", headers={"ETag": endpoints.etag(endpoint)})


def _engine(engine: str | None) -> CatalogEngine | None:
    if engine is None:
        return None
    try:
        return CatalogEngine(engine.lower())
    except ValueError:
        known = ", ".join(e.value for e in CatalogEngine)
        raise BadRequest(
            f"engine: {engine!r} is not an engine of the catalog: use one of {known}",
            fields=[{"field": "engine", "message": "unknown engine"}],
        ) from None


def _item(model: CatalogModel, recipes: list[CatalogRecipe]) -> dict[str, Any]:
    return {
        "repoId": model.repo_id,
        "modelName": model.model_name,
        "authorName": model.author_name,
        "license": model.license,
        "task": model.task,
        "createdAt": to_client_time(model.created_at),
        "recipes": [
            {
                "publicId": r.public_id,
                "accelerator": r.accelerator.value,
                "engineType": r.engine_type.value,
                "ggufFile": r.gguf_file,
                "revision": r.revision,
                # The rest of what a deploy of the recipe creates: a form can start from it (the console does).
                "type": r.type.value,
                "framework": service.recipe_framework(r),
                "hardware": r.hardware.model_dump(by_alias=True, exclude_none=True),
                "scaling": r.scaling.model_dump(by_alias=True),
                "env": dict(r.env),
                "options": dict(r.options),
            }
            for r in recipes
        ],
    }
