"""Database outages: which errors mean the database is away, and one log line when an outage begins and one
when it ends, however many operations fail in between.

An outage (a restart, a failover, a cut network) shows as a failure to connect, whatever the server answered
(refused, starting up, shutting down, a role that may not log in: psycopg reports no SQLSTATE for any of them),
or as a connection the server closed (admin or crash shutdown, SQLSTATE class 08). Errors about a statement (a
constraint, a bad value, a serialization failure, a statement timeout) are not outages.

``watch(engine)`` follows an engine's pool: SQLAlchemy's ``handle_error`` event sees each failure and its
``connect`` event each new connection, so watching costs nothing on the way of a working request. Connections
are not pinged before use: after a disconnect SQLAlchemy invalidates the whole pool, so once the database is
back each process fails at most once more, on the connections it held when the outage began.

Waiting loops (notifications, the controller's resync) count their failures with ``Outage.failed`` and wait
``core.retry`` backoff delays between attempts. Requests fail at once: the API and the gateway answer 503 with
``Retry-After: RETRY_AFTER_SECONDS``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from prometheus_client import Counter, Gauge
from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError

RETRY_AFTER_SECONDS = 5
_SERVER_GONE = frozenset({"57P01", "57P02", "57P03"})  # admin shutdown, crash shutdown, cannot connect now

UP = Gauge("dais_database_up", "1 while this process reaches its database, 0 during an outage.", ["connection"])
OUTAGES = Counter("dais_database_outages_total", "Database outages this process lived through.", ["connection"])

log = logging.getLogger("dais.db")


def unavailable(exc: BaseException | None) -> bool:
    """Whether ``exc`` (SQLAlchemy's or psycopg's) means the database cannot be reached."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _SERVER_GONE


def level(exc: BaseException, otherwise: int = logging.WARNING) -> int:
    """The log level of a failed operation: DEBUG during an outage (``watch`` and ``Outage`` log that once),
    ``otherwise`` for any other error."""
    return logging.DEBUG if unavailable(exc) else otherwise


def describe(exc: BaseException) -> str:
    """The driver's first line: what an operator reads in the log, without SQLAlchemy's SQL and links."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    first = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {first[0] if first else ''}".rstrip(": ")


class Outage:
    """The state of one connection to the database (``connection``: ``pool`` or ``notifications``), shared by
    the threads that use it: logs an outage's first failure and its end, and exports ``dais_database_up``."""

    def __init__(self, connection: str, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.connection = connection
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._since: float | None = None
        self._failures = 0
        UP.labels(connection).set(1)

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> int:
        """Counts a failure; returns how many came before it in this outage (a backoff's attempt number)."""
        with self._lock:
            before = self._failures
            self._failures += 1
            if self._since is None:
                self._since = self.monotonic()
            else:
                return before
        UP.labels(self.connection).set(0)
        OUTAGES.labels(self.connection).inc()
        log.warning(
            "database unavailable (%s connection: %s): waiting for it, retrying with backoff",
            self.connection,
            describe(exc),
        )
        return before

    def recovered(self) -> None:
        if self._since is None:  # the common case, read without the lock
            return
        with self._lock:
            if self._since is None:
                return
            seconds, failures = self.monotonic() - self._since, self._failures
            self._since, self._failures = None, 0
        UP.labels(self.connection).set(1)
        log.info("database back (%s connection) after %.1f s, %d attempt(s) failed", self.connection, seconds, failures)


def watch(engine: Engine) -> Outage:
    """Follows ``engine``'s pool: an outage's first failure and its end are logged, once each."""
    outage = Outage("pool")

    @event.listens_for(engine, "handle_error")
    def _failed(context: Any) -> None:
        if context.is_disconnect or unavailable(context.original_exception):
            outage.failed(context.original_exception)

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_connection: Any, _record: Any) -> None:
        outage.recovered()

    return outage
