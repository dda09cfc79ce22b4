"""Endpoint change notifications, delivered only after the writing transaction commits.

Postgres: a trigger on ``endpoints`` NOTIFYs channel ``dais_endpoints`` with the row's id (migration
0002), so any writer in any process announces its change; ``listen_postgres`` receives them. A
notification can be lost while the listener is disconnected (a database restart), so every reconnect calls
``on_gap`` once LISTEN is in effect (the controller and the gateway re-read everything then).

SQLite (``dais serve``, one process): ``LocalBus.attach`` publishes the ids of endpoints a session
flushed, or wrote with Core statements and named with ``note_written``, once its transaction commits.

Wake requests (gateway → autoscaler) travel the same way on channel ``dais_wake``: ``request_wake``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import event, text
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from core.db.models import Endpoint, EndpointScaling
from core.db.outage import Outage, describe, unavailable
from core.db.session import CONNECT_TIMEOUT_SECONDS
from core.retry import Backoff

CHANNEL = "dais_endpoints"
WAKE_CHANNEL = "dais_wake"
ROUTES_CHANNEL = "dais_routes"  # status writes (migration 0006): the gateway's routing table follows them
RECONNECT_BACKOFF = Backoff(base=1.0, cap=30.0)
_PENDING = "dais_changed_endpoints"
_WRITTEN = "dais_written_endpoints"

log = logging.getLogger("dais.changes")


class LocalBus:
    """In-process fan-out of changed endpoint ids."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[str], None]] = []

    def subscribe(self, callback: Callable[[str], None]) -> None:
        with self._lock:
            self._subscribers.append(callback)

    def publish(self, endpoint_id: str) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            callback(endpoint_id)

    def attach(self, factory: sessionmaker[Session], *, rows: tuple[type, ...] = (Endpoint, EndpointScaling)) -> None:
        """Publishes, after commit, the endpoint of every row of a type in ``rows`` that sessions from ``factory``
        inserted or updated: by default specs and desired counts (what the controller follows; Postgres: the
        triggers of migrations 0002 and 0004), or e.g. specs and status for the gateway (migration 0006)."""
        key = f"{_PENDING}_{id(self)}"
        follows_specs = Endpoint in rows

        @event.listens_for(factory, "after_flush")
        def _collect(session: Session, _context: Any) -> None:
            changed = session.info.setdefault(key, set())
            for obj in (*session.new, *session.dirty):
                if isinstance(obj, rows):
                    changed.add(obj.id if isinstance(obj, Endpoint) else getattr(obj, "endpoint_id"))  # noqa: B009

        @event.listens_for(factory, "after_commit")
        def _publish(session: Session) -> None:
            changed: set[str] = session.info.pop(key, set())
            if follows_specs:
                changed |= session.info.get(_WRITTEN, set())
            for endpoint_id in changed:
                self.publish(endpoint_id)

        @event.listens_for(factory, "after_rollback")
        def _drop(session: Session) -> None:
            session.info.pop(key, None)

        @event.listens_for(factory, "after_transaction_end")
        def _forget(session: Session, transaction: SessionTransaction) -> None:
            if transaction.parent is None:  # every bus's after_commit has run by now
                session.info.pop(_WRITTEN, None)


def note_written(session: Session, endpoint_id: str) -> None:
    """Names an endpoint written by a Core statement, which the ORM's flush does not see, for the buses
    above (Postgres' triggers see every write by themselves)."""
    session.info.setdefault(_WRITTEN, set()).add(endpoint_id)


def request_wake(sessions: sessionmaker[Session], endpoint_id: str, bus: LocalBus | None = None) -> None:
    """Asks the autoscaler for a replica of an endpoint at zero, at once.

    Postgres: NOTIFY ``dais_wake`` (any process); SQLite (one process): ``bus``, the process's wake bus. A wake
    lost to an autoscaler restart is caught by its next tick, which wakes any endpoint at zero with a request in
    flight.
    """
    if bus is not None:
        bus.publish(endpoint_id)
        return
    with sessions.begin() as session:
        session.execute(text("SELECT pg_notify(:channel, :id)"), {"channel": WAKE_CHANNEL, "id": endpoint_id})


def listen_postgres(
    url: str,
    *,
    on_change: Callable[[str], None],
    on_gap: Callable[[], None],
    stop: threading.Event,
    channel: str | tuple[str, ...] = CHANNEL,
    poll_seconds: float = 1.0,
) -> None:
    """Blocks until ``stop`` is set, calling ``on_change(id)`` per notification on ``channel`` (or each of
    several). On any error it reconnects with backoff; after every (re)connect and LISTEN it calls ``on_gap()``,
    the caller's full resync, and retries that too until it succeeds. A database outage is logged once."""
    channels = (channel,) if isinstance(channel, str) else channel
    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    outage = Outage("notifications")
    failures = 0
    while not stop.is_set():
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
                for name in channels:
                    conn.execute(f"LISTEN {name}")
                on_gap()  # whatever changed while nobody listened, up to LISTEN taking effect, is caught here
                outage.recovered()
                failures = 0
                while not stop.is_set():
                    for notice in conn.notifies(timeout=poll_seconds):
                        on_change(notice.payload)
        except Exception as exc:  # the thread never dies: a lost listener would lose every later change
            delay = RECONNECT_BACKOFF.delay(failures)
            failures += 1
            if unavailable(exc):
                outage.failed(exc)
                log.debug("database notifications: %s; reconnecting in %.1fs", describe(exc), delay)
            else:
                log.error("database notifications failed; reconnecting in %.1fs", delay, exc_info=True)
            stop.wait(delay)
