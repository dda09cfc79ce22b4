"""Migrations: upgrade → downgrade → upgrade on PostgreSQL and SQLite, and no drift from the models."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import migrations
from api.db.base import Base
from api.db.session import make_engine
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
    "endpoint_activity",
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
