"""no planner statistics on the JSON documents and encrypted blobs

No query filters, joins or sorts on these columns: they are payloads, read whole. Yet ANALYZE sampled and
compared them, and on ``audit_events.diff`` that was nine tenths of its cost (0.36-0.49 s of CPU for 22,000
rows, against 0.05 s without). Autovacuum's ANALYZE of the append-only audit log and of ``endpoints`` took
a core for a second at a time, and every API request in flight waited behind it. ``SET STATISTICS 0``
makes ANALYZE skip a column; the planner's estimates for the columns queries do use are unchanged.

Postgres only: SQLite gathers no such statistics.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DOCUMENTS = {
    "accounts": ("hub_token",),
    "endpoints": ("spec", "secrets", "resolution"),
    "endpoint_status": ("conditions", "addresses"),
    "endpoint_scaling": ("state",),
    "scaling_decisions": ("inputs",),
    "audit_events": ("diff",),
}


def _set_statistics(target: int) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in DOCUMENTS.items():
        changes = ", ".join(f"ALTER COLUMN {column} SET STATISTICS {target}" for column in columns)
        op.execute(f"ALTER TABLE {table} {changes}")


def upgrade() -> None:
    _set_statistics(0)


def downgrade() -> None:
    _set_statistics(-1)  # the server's default_statistics_target
