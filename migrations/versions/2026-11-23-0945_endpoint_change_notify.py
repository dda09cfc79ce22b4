"""endpoint change notifications (Postgres NOTIFY from a trigger)

Every insert or update of an endpoint row NOTIFYs channel ``dais_endpoints`` with its id, whoever
writes it, delivered at commit. The controller LISTENs. SQLite has no NOTIFY: ``dais serve`` uses an
in-process bus instead (core/db/changes.py).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 09:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION dais_notify_endpoint() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_notify('dais_endpoints', NEW.id);
            RETURN NULL;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE TRIGGER endpoints_notify AFTER INSERT OR UPDATE ON endpoints
        FOR EACH ROW EXECUTE FUNCTION dais_notify_endpoint()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER endpoints_notify ON endpoints")
    op.execute("DROP FUNCTION dais_notify_endpoint()")
