"""Hub resolution per endpoint and a Hub token per namespace

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("hub_token", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("hub_token_updated_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(
            sa.Column(
                "resolution",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("resolution")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("hub_token_updated_at")
        batch.drop_column("hub_token")
