"""The namespace-wide audit log's bodies."""

from __future__ import annotations

from pydantic import Field

from api.endpoint.schemas import AuditEventRead
from api.schemas import Out


class NamespaceAuditEvent(AuditEventRead):
    endpoint: str | None = Field(description="The endpoint's name; null for namespace events or once it is deleted.")
    endpoint_id: str | None


class NamespaceAuditPage(Out):
    items: list[NamespaceAuditEvent]
    next: int | None = Field(description="Pass as `before` for the next page; null on the last.")
