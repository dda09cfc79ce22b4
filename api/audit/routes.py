from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.audit import service
from api.audit.render import event_item
from api.audit.schemas import NamespaceAuditPage
from api.deps import ContextDep
from api.responses import FastJSONResponse
from api.schemas import documented, errors
from api.validation import require_zones

router = APIRouter(prefix="/v2", tags=["audit"], default_response_class=FastJSONResponse)


@router.get(
    "/audit-logs/{namespace}",
    response_model=None,
    responses={
        **documented(NamespaceAuditPage, "A page of the namespace's audit log, newest first."),
        **errors(400, 403, 404),
    },
)
def namespace_audit_log(
    namespace: str,
    ctx: ContextDep,
    endpoint: Annotated[str | None, Query(max_length=64, description="One endpoint's events, by name.")] = None,
    actor: Annotated[str | None, Query(max_length=64, description="Who did it: a user or a component.")] = None,
    action: Annotated[str | None, Query(max_length=64, description="As in endpoint.update or endpoint.pause.")] = None,
    since: Annotated[datetime | None, Query(description="Events from this time on (ISO 8601 with a zone).")] = None,
    until: Annotated[datetime | None, Query(description="Events before this time (ISO 8601 with a zone).")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1, le=2**62, description="Cursor: the `next` of the previous page.")] = None,
) -> dict[str, Any]:
    """Who changed what in a namespace, newest first: every endpoint's events (deleted ones' too) and the
    namespace's own, with the actor, the action, the diff (secrets redacted) and the request id."""
    require_zones(since=since, until=until)
    with ctx.unit(read_only=True) as unit:
        unit.principal.require_namespace(namespace)
        rows = service.events_in(
            unit.session,
            namespace=namespace,
            endpoint=endpoint,
            actor=actor,
            action=action,
            since=since,
            until=until,
            limit=limit,
            before=before,
        )
        items = [{**event_item(event), "endpoint": name, "endpointId": event.endpoint_id} for event, name in rows]
    return {"items": items, "next": rows[-1][0].id if len(rows) == limit else None}
