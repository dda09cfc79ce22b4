"""where the gateway sends an endpoint's traffic, and a notification whenever that changes

The controller writes, next to the state: ``upstream`` (the endpoint's Service URL), ``addresses`` (its Ready
pods' ``ip:port``, for least-outstanding balancing) and ``startup_seconds`` (how long the latest Ready replica
took to start, the gateway's ``Retry-After`` estimate). On Postgres every status write NOTIFYs channel
``dais_routes`` with the endpoint id, so a gateway forwards held requests the moment a replica turns Ready.

``endpoint_activity`` gets one row per endpoint *and gateway replica* (``gateway``), since every replica
counts only its own requests; the autoscaler sums them. The table held nothing yet (no gateway wrote it),
so it is re-created rather than altered.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 17:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _activity_table(*, per_gateway: bool) -> None:
    columns = [sa.Column("endpoint_id", sa.String(length=32), nullable=False)]
    if per_gateway:
        columns.append(sa.Column("gateway", sa.String(length=64), nullable=False))
    op.create_table(
        "endpoint_activity",
        *columns,
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
        sa.PrimaryKeyConstraint(
            *(["endpoint_id", "gateway"] if per_gateway else ["endpoint_id"]), name=op.f("pk_endpoint_activity")
        ),
    )


def upgrade() -> None:
    op.drop_table("endpoint_activity")
    _activity_table(per_gateway=True)
    op.add_column("endpoint_status", sa.Column("upstream", sa.String(length=512), nullable=True))
    op.add_column("endpoint_status", sa.Column("addresses", JSON_DOC, nullable=True))
    op.add_column("endpoint_status", sa.Column("startup_seconds", sa.Float(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION dais_notify_routes() RETURNS trigger AS $$
            BEGIN
                PERFORM pg_notify('dais_routes', NEW.endpoint_id);
                RETURN NULL;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            """
            CREATE TRIGGER endpoint_status_notify AFTER INSERT OR UPDATE ON endpoint_status
            FOR EACH ROW EXECUTE FUNCTION dais_notify_routes()
            """
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER endpoint_status_notify ON endpoint_status")
        op.execute("DROP FUNCTION dais_notify_routes()")
    with op.batch_alter_table("endpoint_status") as batch:
        batch.drop_column("startup_seconds")
        batch.drop_column("addresses")
        batch.drop_column("upstream")
    op.drop_table("endpoint_activity")
    _activity_table(per_gateway=False)
