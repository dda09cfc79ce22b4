"""Writes to the API's tables (``endpoints``, ``audit_events``) that another component makes. The API owns these
rows; the one exception is gathered here, so that a reader of the schema finds every outside writer at once."""

from __future__ import annotations

from datetime import datetime

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
