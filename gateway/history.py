"""The gateway's part of the embedded metric history (``core.db.metric_samples``): every 10 s, each endpoint's
traffic since the last sample, taken from the figures the gateway counts anyway (``gateway.metrics.Series``).

Sampling happens on the event loop and costs one pass over the endpoints that have figures: a tuple of the
cumulative counts per endpoint, compared with the last one; an endpoint with no new count and nothing pending
is skipped. The rows are written in a worker thread, one transaction per sample; a sample that could not be
written (the database is away) is sent again with the next ones, under its own time. ``BACKLOG`` samples at most
wait: past that the oldest is folded into the next one, so a long outage costs the history its resolution, not
its counts, and memory stays bounded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from core.db.metric_samples import BUCKETS, Traffic, write_traffic
from gateway import metrics

log = logging.getLogger("dais.gateway.history")

BACKLOG = 6  # samples kept apart for another try when the database is away: a minute (under ROLLUP_LAG)


def _counts(series: metrics.Series) -> tuple[int, ...]:
    """Cumulative, in the order of ``core.db.models.TRAFFIC_COUNTS``: 2xx … 5xx, failures, buckets, tokens."""
    return (*series.requests[1:], series.failures, *series.duration_counts, series.prompt, series.completion)


_NONE = (0,) * (4 + 1 + BUCKETS + 2)


@dataclass
class TrafficHistory:
    """What each endpoint's figures were at the last sample."""

    _seen: dict[str, tuple[metrics.Series, tuple[int, ...]]] = field(default_factory=dict)
    backlog: list[tuple[int, list[Traffic]]] = field(default_factory=list)

    def sample(self, endpoint_id: Callable[[str], str | None]) -> list[Traffic]:
        """Each endpoint's traffic since the last call; ``endpoint_id`` maps ``namespace/name`` to the endpoint's
        id (None: no longer routed, skipped)."""
        samples = []
        seen: dict[str, tuple[metrics.Series, tuple[int, ...]]] = {}
        for series in metrics.every():
            counts = _counts(series)
            before = self._seen.get(series.label)
            # A series dropped and made again (its endpoint left the table and came back) counts from zero.
            last = before[1] if before is not None and before[0] is series else _NONE
            seen[series.label] = (series, counts)
            if counts == last and not series.pending and not series.held:
                continue
            found = endpoint_id(series.label)
            if found is None:
                continue
            delta = tuple(now - then for now, then in zip(counts, last, strict=True))
            samples.append(
                Traffic(
                    endpoint_id=found,
                    requests=(delta[0], delta[1], delta[2], delta[3]),
                    failures=delta[4],
                    durations=delta[5 : 5 + BUCKETS],
                    prompt_tokens=delta[5 + BUCKETS],
                    completion_tokens=delta[6 + BUCKETS],
                    pending=series.pending,
                    held=series.held,
                )
            )
        self._seen = seen
        return samples

    def queue(self, at: int, samples: list[Traffic]) -> list[tuple[int, list[Traffic]]]:
        """The samples to write now: the unwritten ones before, and this one."""
        if samples:
            self.backlog.append((at, samples))
        while len(self.backlog) > BACKLOG:
            (_, older), (later_at, later) = self.backlog[0], self.backlog[1]
            self.backlog[:2] = [(later_at, _folded(older, later))]
        return list(self.backlog)

    def written(self, batches: list[tuple[int, list[Traffic]]]) -> None:
        done = {id(batch) for batch in batches}
        self.backlog = [batch for batch in self.backlog if id(batch) not in done]


def _folded(older: list[Traffic], later: list[Traffic]) -> list[Traffic]:
    """One sample holding both samples' figures, at the later one's time."""
    by_endpoint = {sample.endpoint_id: sample for sample in older}
    for sample in later:
        before = by_endpoint.get(sample.endpoint_id)
        by_endpoint[sample.endpoint_id] = sample if before is None else before.plus(sample)
    return list(by_endpoint.values())


def write_samples(sessions: sessionmaker[Session], batches: list[tuple[int, list[Traffic]]], *, source: str) -> int:
    """This gateway replica's samples, in one transaction; returns the rows written."""
    if not batches:
        return 0
    with sessions.begin() as session:
        written = sum(write_traffic(session, samples, at=at, source=source) for at, samples in batches)
    log.debug("wrote %d traffic sample row(s)", written)
    return written
