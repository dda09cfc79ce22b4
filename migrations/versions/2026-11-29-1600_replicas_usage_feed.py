"""replicas as observed (running or gone), the replica-count history usage is computed from, the live feed

Postgres: an insert into ``endpoint_feed`` NOTIFYs ``dais_feed`` at commit (one per statement): the API's
watchers read what is new then, rather than polling the table.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "endpoint_replicas",
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=253), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=253), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("restarts", sa.Integer(), nullable=False),
        sa.Column("last_termination", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_endpoint_replicas_endpoint_id_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("endpoint_id", "id", name=op.f("pk_endpoint_replicas")),
    )
    op.create_table(
        "replica_counts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("hardware", sa.String(length=160), nullable=False),
        sa.Column("price_per_hour", sa.Float(), nullable=False),
        sa.Column("replicas", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replica_counts")),
    )
    op.create_index("ix_replica_counts_namespace_at", "replica_counts", ["namespace", "at"])
    op.create_index("ix_replica_counts_endpoint_id_at", "replica_counts", ["endpoint_id", "at"])
    op.create_table(
        "endpoint_feed",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("body", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_endpoint_feed")),
    )
    op.create_index("ix_endpoint_feed_namespace_id", "endpoint_feed", ["namespace", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION dais_notify_feed() RETURNS trigger AS $$
            BEGIN
                PERFORM pg_notify('dais_feed', '');
                RETURN NULL;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            """
            CREATE TRIGGER endpoint_feed_notify AFTER INSERT ON endpoint_feed
            FOR EACH STATEMENT EXECUTE FUNCTION dais_notify_feed()
            """
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER endpoint_feed_notify ON endpoint_feed")
        op.execute("DROP FUNCTION dais_notify_feed()")
    op.drop_index("ix_endpoint_feed_namespace_id", table_name="endpoint_feed")
    op.drop_table("endpoint_feed")
    op.drop_index("ix_replica_counts_endpoint_id_at", table_name="replica_counts")
    op.drop_index("ix_replica_counts_namespace_at", table_name="replica_counts")
    op.drop_table("replica_counts")
    op.drop_table("endpoint_replicas")
