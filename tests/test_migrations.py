"""Migrations: upgrade → downgrade → upgrade on PostgreSQL and SQLite, and no drift from the models."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

import migrations
from core.db.base import Base
from core.db.session import make_engine
from tests.fixtures.postgres import create_database

TABLES = {
    "accounts",
    "memberships",
    "api_tokens",
    "endpoints",
    "endpoint_status",
    "audit_events",
    "endpoint_scaling",
    "scaling_decisions",
    "endpoint_replicas",
    "replica_counts",
    "endpoint_feed",
    "endpoint_activity",
    "metric_samples",
}


@pytest.fixture(params=["postgresql", "sqlite"])
def fresh_url(request: pytest.FixtureRequest, pg_server: str, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dais.db'}"
    worker = getattr(request.config, "workerinput", {}).get("workerid", "main")
    return create_database(pg_server, f"dais_migrations_{worker}")


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(fresh_url: str) -> None:
    migrations.upgrade(fresh_url)
    assert tables(fresh_url) == TABLES
    migrations.downgrade(fresh_url, "base")
    assert tables(fresh_url) == set()
    migrations.upgrade(fresh_url)
    assert tables(fresh_url) == TABLES


def test_models_and_migrations_agree(fresh_url: str) -> None:
    migrations.upgrade(fresh_url)
    engine = make_engine(fresh_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], "run: alembic revision --autogenerate (see migrations/__init__.py)"


def test_migration_files_are_dated() -> None:
    names = [p.name for p in (Path(migrations.__file__).parent / "versions").glob("*.py")]
    assert names
    for name in names:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d-\d{4}_[a-z0-9_]+\.py", name), f"{name}: want YYYY-MM-DD-HHMM_slug.py"


def test_documents_carry_no_planner_statistics(pg_server: str, request: pytest.FixtureRequest) -> None:
    """ANALYZE skips the JSON documents and blobs (migration 0007): sampling audit_events.diff was nine tenths
    of autovacuum's cost on that table, paid by every request in flight."""
    worker = getattr(request.config, "workerinput", {}).get("workerid", "main")
    url = create_database(pg_server, f"dais_statistics_{worker}")
    migrations.upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            skipped = {
                (table, column)
                for table, column in connection.execute(
                    text(
                        "SELECT attrelid::regclass::text, attname FROM pg_attribute "
                        "WHERE attstattarget = 0 AND attnum > 0 AND NOT attisdropped"
                    )
                )
            }
    finally:
        engine.dispose()
    assert {("audit_events", "diff"), ("endpoints", "spec"), ("scaling_decisions", "inputs")} <= skipped
    assert ("endpoints", "namespace") not in skipped, "columns that queries filter on keep their statistics"
