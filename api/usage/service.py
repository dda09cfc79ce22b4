"""Usage: replica-hours and cost per endpoint, hardware row and UTC day, from the replica-count history the
controller records as it observes (``replica_counts``): exact to the observation, not estimated.

A count holds from its row until the endpoint's next row. The count in force at the start of the range is the
endpoint's last row before it; a count still in force is counted up to the end of the range or now.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from api.errors import BadRequest
from core.db.models import ReplicaCount

MAX_RANGE = timedelta(days=400)


@dataclass(frozen=True, slots=True)
class Span:
    """``replicas`` of ``hardware`` held by one endpoint over [start, end)."""

    endpoint_id: str
    name: str
    hardware: str
    price_per_hour: float
    replicas: int
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Usage:
    endpoint_id: str
    name: str
    hardware: str
    day: date
    replica_seconds: float
    cost: float


def usage_in(session: Session, *, namespace: str, start: datetime, end: datetime, now: datetime) -> list[Usage]:
    if end <= start:
        raise BadRequest("to: must be after from", fields=[{"field": "to", "message": "not after from"}])
    if end - start > MAX_RANGE:
        raise BadRequest(
            f"from, to: at most {MAX_RANGE.days} days at once; ask for the range in parts",
            fields=[{"field": "from", "message": "range too long"}],
        )
    return per_day(spans(_rows(session, namespace, start, end), start=start, end=min(end, now)))


def _rows(session: Session, namespace: str, start: datetime, end: datetime) -> Sequence[ReplicaCount]:
    """Every row inside the range, and each endpoint's last row before it (the count in force at ``start``)."""
    before = (
        select(ReplicaCount.endpoint_id, func.max(ReplicaCount.at).label("at"))
        .where(ReplicaCount.namespace == namespace, ReplicaCount.at < start)
        .group_by(ReplicaCount.endpoint_id)
        .subquery()
    )
    in_force = select(ReplicaCount).join(
        before, and_(ReplicaCount.endpoint_id == before.c.endpoint_id, ReplicaCount.at == before.c.at)
    )
    inside = select(ReplicaCount).where(
        ReplicaCount.namespace == namespace, ReplicaCount.at >= start, ReplicaCount.at < end
    )
    rows = {r.id: r for r in session.scalars(in_force)} | {r.id: r for r in session.scalars(inside)}
    return sorted(rows.values(), key=lambda r: (r.endpoint_id, r.at, r.id))


def spans(rows: Iterable[ReplicaCount], *, start: datetime, end: datetime) -> list[Span]:
    """The rows (sorted by endpoint, then time) as spans clipped to [start, end)."""
    found: list[Span] = []
    ordered = list(rows)
    for index, row in enumerate(ordered):
        following = ordered[index + 1] if index + 1 < len(ordered) else None
        until = following.at if following is not None and following.endpoint_id == row.endpoint_id else end
        begin, finish = max(row.at, start), min(until, end)
        if row.replicas and finish > begin:
            found.append(Span(row.endpoint_id, row.name, row.hardware, row.price_per_hour, row.replicas, begin, finish))
    return found


def per_day(found: Iterable[Span]) -> list[Usage]:
    """Spans cut at UTC midnights and summed per endpoint, hardware row and day."""
    seconds: dict[tuple[str, str, str, date], float] = defaultdict(float)
    cost: dict[tuple[str, str, str, date], float] = defaultdict(float)
    for span in found:
        moment = span.start
        while moment < span.end:
            midnight = datetime.combine(moment.date() + timedelta(days=1), datetime.min.time(), UTC)
            piece = (min(midnight, span.end) - moment).total_seconds() * span.replicas
            key = (span.endpoint_id, span.name, span.hardware, moment.date())
            seconds[key] += piece
            cost[key] += piece / 3600 * span.price_per_hour
            moment = midnight
    return [Usage(*key, seconds[key], cost[key]) for key in sorted(seconds, key=lambda k: (k[3], k[1], k[2]))]
