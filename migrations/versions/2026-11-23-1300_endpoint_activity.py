"""gateway activity per endpoint (last request, in flight, mean pending), read by the autoscaler

Wake requests need no table: the gateway NOTIFYs channel ``dais_wake`` with the endpoint id (core/db/changes.py),
and the autoscaler's tick also wakes any endpoint at zero whose activity shows a request in flight.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "endpoint_activity",
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("last_request_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("in_flight", sa.Integer(), nullable=False),
        sa.Column("pending_mean", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_endpoint_activity_endpoint_id_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("endpoint_id", name=op.f("pk_endpoint_activity")),
    )


def downgrade() -> None:
    op.drop_table("endpoint_activity")
