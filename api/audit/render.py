"""An audit event as the API shows it (an endpoint's events and the namespace's log)."""

from __future__ import annotations

from typing import Any

from core.db.models import AuditEvent
from core.domain.timefmt import to_client_time


def event_item(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "time": to_client_time(event.created_at),
        "actor": event.actor,
        "action": event.action,
        "diff": event.diff,
        "requestId": event.request_id,
        "sourceAddress": event.source_address,
    }
