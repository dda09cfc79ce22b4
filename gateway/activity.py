"""Per-endpoint traffic signals for the autoscaler: requests in flight (pending = no response status yet, held
cold-start requests included), their time-weighted mean over the last 20 s, the last request time, and the
requests arriving and completed per second over the last minute (the use window's default; a completion is an
exchange relayed to its end, not shed with 429 or 503: under saturation the two rates part, and their ratio is
the work offered beyond the work done).

Counting happens on the event loop and costs two dict lookups a request. Every ``period_s`` the counts are
closed into a snapshot, and only rows that changed are written (one transaction, in a worker thread), so an
endpoint's row is written at most once per period and an idle endpoint costs nothing.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db.models import Endpoint, EndpointActivity

MEAN_PERIODS = 4  # × 5 s: the autoscaler's 20 s pending window
RATE_PERIODS = 12  # × 5 s: the autoscaler's 60 s use window
REFRESH_SECONDS = 20.0  # a busy row unchanged this long is written again: the autoscaler takes a row silent for
# 60 s (autoscaler.sources.ACTIVITY_STALE_SECONDS) for a gone replica's, and would drop its requests in flight

log = logging.getLogger("dais.gateway.activity")


@dataclass
class _Count:
    since: float  # monotonic start of the open period's area
    in_flight: int = 0
    area: float = 0.0  # in-flight × seconds in the open period
    periods: deque[float] = field(default_factory=lambda: deque(maxlen=MEAN_PERIODS))
    arrivals: int = 0  # in the open period
    completions: int = 0
    rates: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=RATE_PERIODS))
    last_request: datetime | None = None
    written: tuple[datetime | None, int, float, float, float] | None = None
    written_at: float = 0.0

    def advance(self, now: float) -> None:
        self.area += self.in_flight * (now - self.since)
        self.since = now


@dataclass(frozen=True, slots=True)
class Row:
    endpoint_id: str
    last_request_at: datetime | None
    in_flight: int
    pending_mean: float
    arrival_rps: float = 0.0
    completion_rps: float = 0.0


class Activity:
    def __init__(
        self,
        *,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.monotonic = monotonic
        self._counts: dict[str, _Count] = {}
        self._period_started = monotonic()

    def started(self, endpoint_id: str) -> None:
        now = self.monotonic()
        count = self._counts.get(endpoint_id)
        if count is None:
            count = self._counts[endpoint_id] = _Count(since=now)
        count.advance(now)
        count.in_flight += 1
        count.arrivals += 1
        count.last_request = self.clock()

    def finished(self, endpoint_id: str) -> None:
        count = self._counts[endpoint_id]
        count.advance(self.monotonic())
        count.in_flight -= 1

    def completed(self, endpoint_id: str) -> None:
        """An exchange relayed to its end (a stream may end long after its status made it no longer pending)."""
        count = self._counts.get(endpoint_id)
        if count is None:
            count = self._counts[endpoint_id] = _Count(since=self.monotonic())
        count.completions += 1

    def close_period(self) -> list[Row]:
        """Closes the open period; returns the rows whose figures changed since they were last written, and busy
        rows unwritten for ``REFRESH_SECONDS``."""
        now = self.monotonic()
        length = max(now - self._period_started, 1e-6)
        self._period_started = now
        changed = []
        for endpoint_id, count in list(self._counts.items()):
            count.advance(now)
            count.periods.append(count.area / length)
            count.rates.append((length, count.arrivals, count.completions))
            count.area, count.arrivals, count.completions = 0.0, 0, 0
            seconds = sum(span for span, _, _ in count.rates)
            figures = (
                count.last_request,
                count.in_flight,
                round(sum(count.periods) / len(count.periods), 3),
                round(sum(arrived for _, arrived, _ in count.rates) / seconds, 3),
                round(sum(done for _, _, done in count.rates) / seconds, 3),
            )
            busy = count.in_flight > 0 or any(figures[2:])
            if figures != count.written or (busy and now - count.written_at >= REFRESH_SECONDS):
                changed.append(Row(endpoint_id, *figures))
                count.written, count.written_at = figures, now
            elif not busy:
                del self._counts[endpoint_id]  # idle and written: forget it until its next request
        return changed

    def unwritten(self, rows: list[Row]) -> None:
        """Rows whose write failed: the next period sends them again."""
        for row in rows:
            count = self._counts.get(row.endpoint_id)
            if count is not None:
                count.written = None

    def forget(self, endpoint_id: str) -> None:
        count = self._counts.get(endpoint_id)
        if count is not None and count.in_flight == 0:
            del self._counts[endpoint_id]


def write_rows(sessions: sessionmaker[Session], rows: list[Row], *, gateway: str, now: datetime) -> None:
    """Upserts this gateway replica's rows; rows of endpoints deleted meanwhile are dropped."""
    if not rows:
        return
    with sessions.begin() as session:
        live = set(session.scalars(select(Endpoint.id).where(Endpoint.id.in_([r.endpoint_id for r in rows]))))
        for row in rows:
            if row.endpoint_id in live:
                session.merge(
                    EndpointActivity(
                        endpoint_id=row.endpoint_id,
                        gateway=gateway,
                        last_request_at=row.last_request_at,
                        in_flight=row.in_flight,
                        pending_mean=row.pending_mean,
                        arrival_rps=row.arrival_rps,
                        completion_rps=row.completion_rps,
                        updated_at=now,
                    )
                )
    log.debug("wrote activity of %d endpoint(s)", len(rows))


def release_gateway(sessions: sessionmaker[Session], *, gateway: str, now: datetime) -> None:
    """On a clean stop: this replica's requests are no longer in flight; its last request times stay."""
    with sessions.begin() as session:
        session.execute(
            update(EndpointActivity)
            .where(EndpointActivity.gateway == gateway)
            .values(in_flight=0, pending_mean=0.0, arrival_rps=0.0, completion_rps=0.0, updated_at=now)
        )
