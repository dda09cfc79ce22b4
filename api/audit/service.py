"""The namespace-wide audit log: who changed what, filtered, a page at a time."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from api.audit import repository
from api.endpoint import repository as endpoints
from api.errors import NotFound
from core.db.models import AuditEvent


def events_in(
    session: Session,
    *,
    namespace: str,
    endpoint: str | None,
    actor: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    before: int | None,
) -> list[tuple[AuditEvent, str | None]]:
    endpoint_id = None
    if endpoint is not None:
        found = endpoints.live_entity(session, namespace, endpoint)
        if found is None:
            raise NotFound(
                f"endpoint {namespace}/{endpoint} not found (the log of a deleted one is in the unfiltered list)"
            )
        endpoint_id = found.id
    return repository.events_in(
        session,
        namespace,
        endpoint_id=endpoint_id,
        actor=actor,
        action=action,
        since=since,
        until=until,
        limit=limit,
        before=before,
    )
