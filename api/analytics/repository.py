"""Queries of the metric history: the endpoint, and sums of its embedded samples per step."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, func, literal_column, select
from sqlalchemy.orm import Session

from core.db.models import Endpoint, metric_samples


def live_endpoint(session: Session, namespace: str, name: str) -> tuple[str, datetime] | None:
    """The live endpoint's id and creation time."""
    found = session.execute(
        select(Endpoint.id, Endpoint.created_at).where(
            Endpoint.namespace == namespace, Endpoint.name == name, Endpoint.deleted_at.is_(None)
        )
    ).first()
    return (found[0], found[1]) if found is not None else None


def rolled_up_to(session: Session, resolution: int) -> int | None:
    """The end of the newest rollup at ``resolution`` (every endpoint's windows up to there are rolled up at once);
    one step down the ``(resolution, at)`` index."""
    found = session.scalar(select(func.max(metric_samples.c.at)).where(metric_samples.c.resolution == resolution))
    return int(found) if found is not None else None


def step_sums(
    session: Session,
    endpoint_id: str,
    *,
    resolution: int,
    origin: int,
    step: int,
    after: int,
    until: int,
    columns: Sequence[str],
) -> dict[int, tuple[Any, ...]]:
    """Per step ``(origin + k·step, origin + (k+1)·step]`` by ``k``, of the samples that end inside ``(after,
    until]``: the sums of ``columns`` over every source's samples (None for a column with only NULLs: zeros).
    One range scan of the primary key, grouped in the database: one row per step with samples."""
    c = metric_samples.c
    slot = (c.at - _n(origin) - _n(1)) // _n(step)
    query = (
        select(slot, *(func.sum(c[name]) for name in columns))
        .where(c.endpoint_id == endpoint_id, c.resolution == resolution, c.at > after, c.at <= until)
        .group_by(slot)
    )
    return {int(row[0]): tuple(row[1:]) for row in session.execute(query)}


def _n(value: int) -> ColumnElement[int]:
    """An integer written into the statement: the GROUP BY expression must match the SELECT's to the letter on
    Postgres, and integer operands keep ``/`` an integer division on both backends."""
    return literal_column(str(int(value)), BigInteger)
