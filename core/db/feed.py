"""The live feed behind ``GET /v2/endpoint/{ns}?watch=true``: status changes, scaling decisions and deletions.

Writers (the controller and the autoscaler, one leader each) call ``publish`` inside the transaction that makes
the change, so an event exists exactly when its change was committed. Ids follow commit order: on Postgres
``publish`` first takes a transaction-scoped advisory lock, held until commit, so no row with a lower id can
become visible after one with a higher id, and a reader that has seen id N has seen every event below it (a
reconnect with ``Last-Event-ID: N`` misses nothing). SQLite has a single writer at a time anyway.

Readers are woken, not polling: Postgres NOTIFYs ``dais_feed`` at commit (trigger of migration 0010); under
``dais serve`` an in-process bus does (``core.db.changes.LocalBus`` attached to ``FeedEvent`` rows). Rows are
kept ``RETENTION``; ``prune`` is called by the controller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from core.db.models import FeedEvent

CHANNEL = "dais_feed"
RETENTION = timedelta(hours=24)
_LOCK_KEY = 0x6461_6973_6665_6564  # "daisfeed": the one advisory lock of the feed's writers


@dataclass(frozen=True, slots=True)
class Event:
    namespace: str
    endpoint_id: str
    name: str
    kind: str  # status, decision or deleted
    body: dict[str, Any]


def publish(session: Session, events: Sequence[Event], *, now: datetime) -> None:
    """Appends events to the feed in the caller's transaction; call it last, just before the commit, since
    on Postgres it serializes the feed's writers until then."""
    if not events:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    session.add_all(
        FeedEvent(
            namespace=e.namespace, endpoint_id=e.endpoint_id, name=e.name, kind=e.kind, body=e.body, created_at=now
        )
        for e in events
    )
    session.flush()


def after(session: Session, last_id: int, *, namespace: str | None = None, limit: int = 1000) -> list[FeedEvent]:
    """Events with ids above ``last_id``, oldest first (one namespace's, or all)."""
    query = select(FeedEvent).where(FeedEvent.id > last_id)
    if namespace is not None:
        query = query.where(FeedEvent.namespace == namespace)
    return list(session.scalars(query.order_by(FeedEvent.id).limit(limit)))


def bounds(session: Session) -> tuple[int, int]:
    """The lowest and highest ids kept (0, 0 when the feed is empty)."""
    low, high = session.execute(select(func.min(FeedEvent.id), func.max(FeedEvent.id))).one()
    return int(low or 0), int(high or 0)


def prune(session: Session, *, now: datetime) -> None:
    session.execute(delete(FeedEvent).where(FeedEvent.created_at < now - RETENTION))
