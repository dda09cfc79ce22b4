"""Writes to the API's tables (``endpoints``, ``audit_events``) that another component makes. The API owns these
rows; the exceptions are gathered here, so that a reader of the schema finds every outside writer at once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core.db.models import AuditEvent, Endpoint


def woken_from_zero(session: Session, endpoint: Endpoint, *, actor: str, now: datetime) -> None:
    """A request woke an endpoint the user had scaled to zero: the user's flag is cleared (as the hosted product
    does) and the audit log says who did it and why."""
    endpoint.scaled_to_zero = False
    session.add(
        AuditEvent(
            endpoint_id=endpoint.id,
            namespace=endpoint.namespace,
            actor=actor,
            action="wake",
            diff=[{"path": "scaledToZero", "old": True, "new": False}],
            request_id="",
            source_address=None,
            created_at=now,
        )
    )


def component_event(
    session: Session,
    *,
    endpoint_id: str,
    namespace: str,
    actor: str,
    action: str,
    diff: list[dict[str, Any]],
    now: datetime,
) -> None:
    """An event the controller or the autoscaler makes by itself (failed, recovered, scaleToZero) in the audit
    log, beside the users' changes, so that "what happened to my endpoint" reads in one place."""
    session.add(
        AuditEvent(
            endpoint_id=endpoint_id,
            namespace=namespace,
            actor=actor,
            action=action,
            diff=diff,
            request_id="",
            source_address=None,
            created_at=now,
        )
    )
