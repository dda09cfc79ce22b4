"""``/v2/endpoint/...``: the Inference Endpoints v2 dialect (reference §7), usable by ``huggingface_hub``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from starlette.responses import Response

from api.audit.repository import AuditContext
from api.db.models import Endpoint, EndpointStatus
from api.deps import AuditDep, NowDep, PrincipalDep, SessionDep, StateDep
from api.domain.spec import EndpointSpec, EndpointUpdate
from api.domain.timefmt import to_client_time
from api.endpoint import repository, service
from api.endpoint.schemas import render
from api.responses import FastJSONResponse

router = APIRouter(prefix="/v2", tags=["endpoints"], default_response_class=FastJSONResponse)
EWS: dict[int | str, dict[str, Any]] = {200: {"description": "The endpoint, with its status (EndpointWithStatus)."}}


def _one(state: StateDep, endpoint: Endpoint, status: EndpointStatus | None) -> Response:
    body = render(endpoint, status, engines=state.catalogs.engines)
    return FastJSONResponse(body, headers={"ETag": service.etag(endpoint)})


@router.get("/endpoint/{namespace}")
def list_endpoints(namespace: str, session: SessionDep, principal: PrincipalDep, state: StateDep) -> Response:
    """All endpoints of a namespace, as ``{"items": [...]}`` (empty, not 404, when there are none)."""
    principal.require_namespace(namespace)
    engines = state.catalogs.engines
    items = [render(e, s, engines=engines) for e, s in repository.list_in(session, namespace)]
    return FastJSONResponse({"items": items})


@router.post("/endpoint/{namespace}", responses=EWS)
def create_endpoint(
    namespace: str,
    spec: EndpointSpec,
    session: SessionDep,
    principal: PrincipalDep,
    ctx: AuditDep,
    state: StateDep,
    now: NowDep,
) -> Response:
    """Create an endpoint; it starts ``pending``. Unknown fields are ignored; a duplicate name is 409."""
    principal.require_namespace(namespace)
    endpoint = service.create(
        session, namespace=namespace, spec=spec, catalogs=state.catalogs, box=state.box, ctx=ctx, now=now
    )
    return _one(state, endpoint, None)


@router.get("/endpoint/{namespace}/{name}", responses=EWS)
def get_endpoint(namespace: str, name: str, session: SessionDep, principal: PrincipalDep, state: StateDep) -> Response:
    """One endpoint with its status. The ``ETag`` header carries its generation for ``If-Match``."""
    principal.require_namespace(namespace)
    endpoint, status = service.get(session, namespace=namespace, name=name)
    return _one(state, endpoint, status)


@router.put("/endpoint/{namespace}/{name}", responses=EWS)
def update_endpoint(
    namespace: str,
    name: str,
    patch: EndpointUpdate,
    session: SessionDep,
    principal: PrincipalDep,
    ctx: AuditDep,
    state: StateDep,
    now: NowDep,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Deep-merge a partial spec into the stored one (``model.image``, lists and maps are replaced).

    ``{}`` changes nothing. With ``If-Match: "<generation>"`` the update applies only to that generation.
    """
    principal.require_namespace(namespace)
    endpoint = service.update(
        session,
        namespace=namespace,
        name=name,
        patch=patch.model_dump(mode="json", by_alias=True, exclude_unset=True),
        if_match=if_match,
        catalogs=state.catalogs,
        box=state.box,
        ctx=ctx,
        now=now,
    )
    return _one(state, endpoint, repository.status_of(session, endpoint.id))


@router.delete("/endpoint/{namespace}/{name}")
def delete_endpoint(
    namespace: str, name: str, session: SessionDep, principal: PrincipalDep, ctx: AuditDep, now: NowDep
) -> dict[str, Any]:
    """Delete an endpoint. It disappears from the API at once; the controller removes its workloads."""
    principal.require_namespace(namespace)
    service.delete(session, namespace=namespace, name=name, ctx=ctx, now=now)
    return {}


def _lifecycle(
    action: str,
    namespace: str,
    name: str,
    session: SessionDep,
    principal: PrincipalDep,
    ctx: AuditContext,
    state: StateDep,
    now: NowDep,
) -> Response:
    principal.require_namespace(namespace)
    if action == "pause":
        endpoint = service.pause(session, namespace=namespace, name=name, ctx=ctx, now=now)
    elif action == "resume":
        endpoint = service.resume(session, namespace=namespace, name=name, catalogs=state.catalogs, ctx=ctx, now=now)
    else:
        endpoint = service.scale_to_zero(session, namespace=namespace, name=name, ctx=ctx, now=now)
    return _one(state, endpoint, repository.status_of(session, endpoint.id))


@router.post("/endpoint/{namespace}/{name}/pause", responses=EWS)
def pause_endpoint(
    namespace: str,
    name: str,
    session: SessionDep,
    principal: PrincipalDep,
    ctx: AuditDep,
    state: StateDep,
    now: NowDep,
) -> Response:
    """Stop all replicas; no automatic wake-up. Paused endpoints do not count against quota."""
    return _lifecycle("pause", namespace, name, session, principal, ctx, state, now)


@router.post("/endpoint/{namespace}/{name}/resume", responses=EWS)
def resume_endpoint(
    namespace: str,
    name: str,
    session: SessionDep,
    principal: PrincipalDep,
    ctx: AuditDep,
    state: StateDep,
    now: NowDep,
) -> Response:
    """Resume a paused or scaled-to-zero endpoint. 400 "already running" when there is nothing to resume."""
    return _lifecycle("resume", namespace, name, session, principal, ctx, state, now)


@router.post("/endpoint/{namespace}/{name}/scale-to-zero", responses=EWS)
def scale_endpoint_to_zero(
    namespace: str,
    name: str,
    session: SessionDep,
    principal: PrincipalDep,
    ctx: AuditDep,
    state: StateDep,
    now: NowDep,
) -> Response:
    """Release all replicas now; the next request through the gateway wakes the endpoint."""
    return _lifecycle("scale-to-zero", namespace, name, session, principal, ctx, state, now)


@router.get("/endpoint/{namespace}/{name}/events")
def endpoint_events(
    namespace: str,
    name: str,
    session: SessionDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1, description="Cursor: the `next` of the previous page.")] = None,
) -> dict[str, Any]:
    """The audit log of one endpoint, newest first: actor, action, spec diff (secrets redacted), request id."""
    principal.require_namespace(namespace)
    rows = service.events(session, namespace=namespace, name=name, limit=limit, before=before)
    items = [
        {
            "id": e.id,
            "time": to_client_time(e.created_at),
            "actor": e.actor,
            "action": e.action,
            "diff": e.diff,
            "requestId": e.request_id,
            "sourceAddress": e.source_address,
        }
        for e in rows
    ]
    return {"items": items, "next": rows[-1].id if len(rows) == limit else None}
