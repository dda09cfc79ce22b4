"""Engines and sessions. One transaction per request, reconcile or tick: callers commit at the boundary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from core.db import outage

CONNECT_TIMEOUT_SECONDS = 5


def make_engine(url: str, *, pool_size: int = 10, pool_timeout: float = 30) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _sqlite_serializable_writes(engine)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size // 2,
        pool_timeout=pool_timeout,
        # No pre-ping: it costs a round trip per request. After a database restart, the first use of a stale
        # connection fails (the API answers 503 with Retry-After) and SQLAlchemy invalidates the whole pool.
        pool_pre_ping=False,
        # A database host that vanished (no RST) fails a connection attempt in seconds rather than minutes.
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,  # LIST decodes 100 specs per request
    )
    outage.watch(engine)
    return engine


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _sqlite_serializable_writes(engine: Engine) -> None:
    """SQLite: WAL, foreign keys, and ``BEGIN IMMEDIATE`` so a read-then-write never loses an update."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any exception."""
    with factory() as session, session.begin():
        yield session
