"""autoscaler: desired replicas per endpoint and the decision log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "endpoint_scaling",
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("replicas", sa.Integer(), nullable=False),
        sa.Column("state", JSON, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_endpoint_scaling_endpoint_id_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("endpoint_id", name=op.f("pk_endpoint_scaling")),
    )
    op.create_table(
        "scaling_decisions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("previous", sa.Integer(), nullable=False),
        sa.Column("raw", sa.Integer(), nullable=False),
        sa.Column("stabilized", sa.Integer(), nullable=False),
        sa.Column("final", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("inputs", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_scaling_decisions_endpoint_id_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scaling_decisions")),
    )
    op.create_index("ix_scaling_decisions_endpoint_id_id", "scaling_decisions", ["endpoint_id", "id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        # A new desired count wakes the controller as a spec change does (channel of migration 0002).
        op.execute(
            """
            CREATE FUNCTION dais_notify_scaling() RETURNS trigger AS $$
            BEGIN
                PERFORM pg_notify('dais_endpoints', NEW.endpoint_id);
                RETURN NULL;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            """
            CREATE TRIGGER endpoint_scaling_notify AFTER INSERT OR UPDATE OF replicas ON endpoint_scaling
            FOR EACH ROW EXECUTE FUNCTION dais_notify_scaling()
            """
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER endpoint_scaling_notify ON endpoint_scaling")
        op.execute("DROP FUNCTION dais_notify_scaling()")
    op.drop_index("ix_scaling_decisions_endpoint_id_id", table_name="scaling_decisions")
    op.drop_table("scaling_decisions")
    op.drop_table("endpoint_scaling")
