"""the embedded metric history: 10-s samples of each endpoint's traffic (per gateway replica) and replicas (the
controller's), and their 5-minute rollups

Every figure is a sum over the sample's seconds (counts, request-seconds, replica-seconds, CPU-seconds …), so
samples add up over gateway replicas, over time and into rollups; zero is stored as NULL. The primary key is the
read's range scan (one endpoint, one resolution, a span of ``at``); ``(resolution, at)`` serves the controller's
rollup and pruning. See ``core.db.metric_samples``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 17:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As of this revision (core.db.models may grow; a migration never changes).
DURATION_BUCKETS = 17  # the gateway's 16 bounds and +Inf
COUNTS = (
    "requests_2xx",
    "requests_3xx",
    "requests_4xx",
    "requests_5xx",
    "failures",
    *(f"duration_b{i:02d}" for i in range(DURATION_BUCKETS)),
    "prompt_tokens",
    "completion_tokens",
)
SECONDS = (
    "pending_s",
    "held_s",
    "ready_s",
    "desired_s",
    "measured_s",
    "cpu_s",
    "memory_bs",
    "gpu_measured_s",
    "gpu_s",
    "gpu_memory_bs",
)


def upgrade() -> None:
    op.create_table(
        "metric_samples",
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("resolution", sa.SmallInteger(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=True) for name in COUNTS),
        *(sa.Column(name, sa.Float(), nullable=True) for name in SECONDS),
        sa.PrimaryKeyConstraint("endpoint_id", "resolution", "at", "source", name=op.f("pk_metric_samples")),
    )
    op.create_index("ix_metric_samples_resolution_at", "metric_samples", ["resolution", "at"])


def downgrade() -> None:
    op.drop_index("ix_metric_samples_resolution_at", table_name="metric_samples")
    op.drop_table("metric_samples")
