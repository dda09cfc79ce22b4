"""requests arriving and completed per second, per endpoint and gateway replica, read by the autoscaler

When use is saturated, arrivals against completions say how much work is offered beyond what the replicas do
(autoscaler/policy.py). Existing rows start at 0 and are rewritten by the next period with traffic.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("endpoint_activity") as table:
        table.add_column(sa.Column("arrival_rps", sa.Float(), nullable=False, server_default="0"))
        table.add_column(sa.Column("completion_rps", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("endpoint_activity") as table:
        table.drop_column("completion_rps")
        table.drop_column("arrival_rps")
