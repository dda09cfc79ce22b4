"""the namespace-wide audit log, newest first, by an index rather than a scan of every namespace's events

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 15:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_audit_events_namespace_id", "audit_events", ["namespace", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_namespace_id", table_name="audit_events")
