"""The embedded metric history (``metric_samples``): what the gateway and the controller saw of each endpoint every
``RAW`` seconds, read by ``GET /v2/endpoint/{ns}/{name}/metrics`` where no Prometheus keeps the history.

- Every figure is a sum over the sample's seconds: counts (requests by status class, failures, requests per
  latency bucket, tokens) and integrals of gauges (request-seconds pending and held, replica-seconds ready and
  desired, CPU-seconds and byte-seconds of the replicas measured). So samples add up over gateway replicas, over
  time and into rollups, with no weights: a step's figure is its sum divided by the step's seconds, or, for a
  per-replica average, by the replica-seconds measured.
- A gauge is read at the sample's instant (as Prometheus scrapes one) and counted for the whole sample.
- A writer skips an endpoint with nothing to report, and zero is stored as NULL: a missing row means zero, and an
  idle endpoint costs nothing.
- ``at`` is the sample's end in Unix seconds, a multiple of its resolution. Each gateway replica writes its own
  rows (``source``: its name), the controller its own (``source``: ``CONTROLLER``); readers sum them.
- ``maintain`` (the controller's, once a minute) rolls each minute's 10-s rows into one row per endpoint and source,
  and each 5 minutes' minute rows into one, once the window is ``ROLLUP_LAG`` old; it prunes 10-s and minute rows
  after ``RAW_KEPT``, 5-minute rows after ``KEPT``. A row that arrives after its window was rolled up is not in the
  rollup (a gateway keeps the last minute's samples it could not write, folding older ones into them: the lag is
  longer). A read picks the coarsest rows its step is a multiple of, and reads the newest steps, not rolled up
  yet, from the 10-s rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import BigInteger, ColumnElement, delete, func, insert, literal_column, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db.models import (
    DURATION_BUCKETS_MS,
    REPLICA_SECONDS,
    TRAFFIC_COUNTS,
    TRAFFIC_SECONDS,
    metric_samples,
)

RAW = 10  # seconds between samples, and the resolution they are written at
MINUTE = 60  # the first rollups' resolution
COARSE = 300  # the second rollups'
RAW_KEPT = 26 * 3600  # 10-s and minute rows: a day, and a margin so "the last 24 h" is served at full resolution
RAW_SERVED = 25 * 3600  # reads older than this use the 5-minute rows
KEPT = 7 * 86400  # 5-minute rows
ROLLUP_LAG = 90  # a window is rolled up this long after it ends: late writers' rows are in it
CONTROLLER = "controller"
FIGURES = (*TRAFFIC_COUNTS, *TRAFFIC_SECONDS, *REPLICA_SECONDS)
BUCKETS = len(DURATION_BUCKETS_MS) + 1


@dataclass(frozen=True, slots=True)
class Traffic:
    """One gateway replica's figures of one endpoint over one sample."""

    endpoint_id: str
    requests: tuple[int, int, int, int] = (0, 0, 0, 0)  # answered by the replicas: 2xx, 3xx, 4xx, 5xx
    failures: int = 0  # an upstream 5xx, or no answer
    durations: tuple[int, ...] = (0,) * BUCKETS  # requests per bucket of DURATION_BUCKETS_MS, +Inf last
    prompt_tokens: int = 0
    completion_tokens: int = 0
    pending: int = 0  # requests without a response status at the sample's instant, held ones included
    held: int = 0  # requests held while the endpoint starts, at the sample's instant

    def counts(self) -> tuple[int, ...]:
        """In the order of ``TRAFFIC_COUNTS``."""
        return (*self.requests, self.failures, *self.durations, self.prompt_tokens, self.completion_tokens)

    def plus(self, other: Traffic) -> Traffic:
        """Both samples' figures in one (the gauges' too: each stands for a sample's integral)."""
        requests = tuple(a + b for a, b in zip(self.requests, other.requests, strict=True))
        return Traffic(
            endpoint_id=self.endpoint_id,
            requests=(requests[0], requests[1], requests[2], requests[3]),
            failures=self.failures + other.failures,
            durations=tuple(a + b for a, b in zip(self.durations, other.durations, strict=True)),
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            pending=self.pending + other.pending,
            held=self.held + other.held,
        )


@dataclass(frozen=True, slots=True)
class Replicas:
    """The controller's figures of one endpoint at one sample. Hardware use is summed over the replicas measured
    (its per-replica average is the sum over the count)."""

    endpoint_id: str
    ready: int = 0
    desired: int = 0
    measured: int = 0  # replicas whose CPU and memory were measured
    cpu_cores: float = 0.0
    memory_bytes: float = 0.0
    gpu_measured: int = 0  # replicas whose GPU was measured
    gpu_percent: float = 0.0
    gpu_memory_bytes: float = 0.0


def next_sample_at(now: float, last: int) -> int:
    """When the next sample ends: the next multiple of ``RAW`` after ``now``, and after the ``last`` one."""
    return max((math.floor(now) // RAW + 1) * RAW, last + RAW)


def traffic_rows(samples: Iterable[Traffic], *, at: int, source: str, resolution: int = RAW) -> list[dict[str, Any]]:
    rows = []
    for sample in samples:
        row: dict[str, Any] = {"endpoint_id": sample.endpoint_id, "resolution": resolution, "at": at, "source": source}
        for name, count in zip(TRAFFIC_COUNTS, sample.counts(), strict=True):
            row[name] = count or None
        row["pending_s"] = sample.pending * resolution or None
        row["held_s"] = sample.held * resolution or None
        rows.append(row)
    return rows


def replica_rows(samples: Iterable[Replicas], *, at: int, resolution: int = RAW) -> list[dict[str, Any]]:
    return [
        {
            "endpoint_id": s.endpoint_id,
            "resolution": resolution,
            "at": at,
            "source": CONTROLLER,
            "ready_s": s.ready * resolution or None,
            "desired_s": s.desired * resolution or None,
            "measured_s": s.measured * resolution or None,
            "cpu_s": s.cpu_cores * resolution if s.measured else None,
            "memory_bs": s.memory_bytes * resolution if s.measured else None,
            "gpu_measured_s": s.gpu_measured * resolution or None,
            "gpu_s": s.gpu_percent * resolution if s.gpu_measured else None,
            "gpu_memory_bs": s.gpu_memory_bytes * resolution if s.gpu_measured else None,
        }
        for s in samples
    ]


class AlreadyWritten(Exception):
    """A row with the same key (endpoint, resolution, time, source) is in the table: the sample was written."""


def insert_rows(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Rows of one kind (each with the same keys) in the caller's transaction: COPY on Postgres (a tenth of the CPU
    of an INSERT's parameters for a thousand rows), a multi-row INSERT elsewhere. ``AlreadyWritten`` when a key is
    taken (the transaction is then to be rolled back)."""
    if not rows:
        return 0
    connection = session.connection()
    raw = connection.connection.driver_connection
    try:
        if connection.dialect.name != "postgresql" or raw is None:
            session.execute(insert(metric_samples), list(rows))
            return len(rows)
        columns = list(rows[0])
        with raw.cursor() as cursor, cursor.copy(f"COPY metric_samples ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[column] for column in columns])
    except (IntegrityError, psycopg.IntegrityError) as exc:
        raise AlreadyWritten(str(exc).splitlines()[0]) from exc
    return len(rows)


def write_traffic(session: Session, samples: Iterable[Traffic], *, at: int, source: str) -> int:
    """A gateway replica's sample ending at ``at``, in the caller's transaction; returns the rows written."""
    return insert_rows(session, traffic_rows(samples, at=at, source=source))


def write_replicas(session: Session, samples: Iterable[Replicas], *, at: int) -> int:
    """The controller's sample ending at ``at``, in the caller's transaction; returns the rows written."""
    return insert_rows(session, replica_rows(samples, at=at))


@dataclass(frozen=True, slots=True)
class Maintained:
    rolled_up: int  # rollup rows written
    pruned: int  # rows deleted


def maintain(session: Session, *, now: datetime) -> Maintained:
    """Rolls up every window that is complete and not rolled up yet (an INSERT … SELECT per resolution: 10 s into
    minutes, minutes into 5 minutes), then prunes (a range DELETE per resolution); each on the ``(resolution,
    at)`` index. The controller's, in its own transaction."""
    c = metric_samples.c
    connection = session.connection()  # Core statements, for their row counts
    moment = int(now.timestamp())
    rolled = 0
    for source, target in ((RAW, MINUTE), (MINUTE, COARSE)):
        horizon = (moment - ROLLUP_LAG) // target * target
        done = connection.scalar(select(func.max(c.at)).where(c.resolution == target))
        if done is None:
            first = connection.scalar(select(func.min(c.at)).where(c.resolution == source))
            done = None if first is None else (first - 1) // target * target
        if done is None or done >= horizon:
            continue
        window = ((c.at - _n(1)) // _n(target) + _n(1)) * _n(target)
        query = (
            select(c.endpoint_id, _n(target), window, c.source, *(func.sum(c[name]) for name in FIGURES))
            .where(c.resolution == source, c.at > done, c.at <= horizon)
            .group_by(c.endpoint_id, c.source, window)
        )
        result = connection.execute(
            insert(metric_samples).from_select(["endpoint_id", "resolution", "at", "source", *FIGURES], query),
            execution_options={"preserve_rowcount": True},
        )
        rolled += max(result.rowcount, 0)
    pruned = 0
    for resolution, kept in ((RAW, RAW_KEPT), (MINUTE, RAW_KEPT), (COARSE, KEPT)):
        gone = connection.execute(delete(metric_samples).where(c.resolution == resolution, c.at <= moment - kept))
        pruned += max(gone.rowcount, 0)
    return Maintained(rolled, pruned)


def _n(value: int) -> ColumnElement[int]:
    """An integer written into the statement (not a parameter): a GROUP BY expression must match its SELECT's
    to the letter on Postgres, and integer operands keep ``/`` an integer division on both backends."""
    return literal_column(str(int(value)), BigInteger)
