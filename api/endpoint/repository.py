from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Select, Table, Text, bindparam, cast, func, insert, select, update
from sqlalchemy.orm import Session, joinedload

from core.db.changes import note_written
from core.db.models import (
    Account,
    Endpoint,
    EndpointActivity,
    EndpointReplica,
    EndpointScaling,
    EndpointStatus,
    ScalingDecision,
)

# Reads go through Core rows, not ORM entities: LIST renders 100 of them per request.
_READ_COLUMNS = (
    Endpoint.id,
    cast(Endpoint.spec, Text).label("spec_json"),  # spliced into the response undecoded
    Endpoint.generation,
    Endpoint.paused,
    Endpoint.scaled_to_zero,
    Endpoint.created_at,
    Endpoint.created_by,
    Endpoint.updated_at,
    Endpoint.updated_by,
    Endpoint.resolution["sha"].as_string().label("resolved_sha"),
    # Status columns keep their names (none clashes with the endpoint's), so observed_of() reads the row.
    EndpointStatus.state,
    EndpointStatus.message,
    EndpointStatus.ready_replica,
    EndpointStatus.target_replica,
    EndpointStatus.url,
    EndpointStatus.observed_generation,
    # The latest request any gateway replica saw (its primary key's first column makes this an index read).
    select(func.max(EndpointActivity.last_request_at))
    .where(EndpointActivity.endpoint_id == Endpoint.id)
    .correlate(Endpoint)
    .scalar_subquery()
    .label("last_activity"),
)


def _live() -> Select[*tuple[Any, ...]]:
    return (
        select(*_READ_COLUMNS)
        .outerjoin(EndpointStatus, EndpointStatus.endpoint_id == Endpoint.id)
        .where(Endpoint.deleted_at.is_(None))
    )


# Built once (statement construction is a visible share of a GET's CPU).
_LIST = _live().where(Endpoint.namespace == bindparam("namespace")).order_by(Endpoint.name)
_GET = _live().where(Endpoint.namespace == bindparam("namespace"), Endpoint.name == bindparam("name"))


def replicas_of(session: Session, endpoint_id: str) -> Sequence[EndpointReplica]:
    """Running replicas by start, then gone ones, latest stop first."""
    return session.scalars(
        select(EndpointReplica)
        .where(EndpointReplica.endpoint_id == endpoint_id)
        .order_by(
            EndpointReplica.stopped_at.is_not(None), EndpointReplica.stopped_at.desc(), EndpointReplica.started_at
        )
    ).all()


def live_entity(session: Session, namespace: str, name: str) -> Endpoint | None:
    return session.scalars(
        select(Endpoint).where(Endpoint.namespace == namespace, Endpoint.name == name, Endpoint.deleted_at.is_(None))
    ).first()


def scaling_of(
    session: Session, endpoint_id: str, limit: int
) -> tuple[EndpointScaling | None, Sequence[ScalingDecision]]:
    decisions = session.scalars(
        select(ScalingDecision)
        .where(ScalingDecision.endpoint_id == endpoint_id)
        .order_by(ScalingDecision.id.desc())
        .limit(limit)
    ).all()
    return session.get(EndpointScaling, endpoint_id), decisions


# Hot statements run on the session's connection: the ORM's execution layer adds nothing to column reads
# and Core writes, and cost about 40 % more CPU per statement (measured: 104 µs against 150 µs for a GET).


def list_in(session: Session, namespace: str) -> Sequence[Row[Any]]:
    return session.connection().execute(_LIST, {"namespace": namespace}).all()


def get_live(session: Session, namespace: str, name: str) -> Row[Any] | None:
    return session.connection().execute(_GET, {"namespace": namespace, "name": name}).first()


_LOCK = (
    select(Endpoint)
    .options(joinedload(Endpoint.status))  # the response needs it: no second round trip
    .where(
        Endpoint.namespace == bindparam("namespace"),
        Endpoint.name == bindparam("name"),
        Endpoint.deleted_at.is_(None),
    )
    .with_for_update(of=Endpoint)
)


def lock_live(session: Session, namespace: str, name: str) -> Endpoint | None:
    """Row lock for the read-modify-write of an update (SQLite: BEGIN IMMEDIATE already serializes).

    The entity comes back detached: the caller changes it and writes it with ``save``, one prebuilt UPDATE,
    rather than through the ORM's flush (a fifth of UPDATE's CPU)."""
    endpoint = session.scalars(_LOCK, {"namespace": namespace, "name": name}).first()
    if endpoint is not None:
        session.expunge(endpoint)
    return endpoint


_TABLE: Table = Endpoint.__table__  # type: ignore[assignment]
_COLUMNS = tuple(column.key for column in _TABLE.columns)
_CHANGEABLE = tuple(key for key in _COLUMNS if key not in ("id", "namespace", "name", "created_at", "created_by"))
_INSERT = insert(_TABLE)
_SAVE = update(_TABLE).where(_TABLE.c.id == bindparam("_id")).values({key: bindparam(key) for key in _CHANGEABLE})


def add(session: Session, endpoint: Endpoint) -> None:
    """Inserts a new endpoint (an ``IntegrityError`` when its name is taken in the namespace)."""
    session.connection().execute(_INSERT, {key: getattr(endpoint, key) for key in _COLUMNS})
    note_written(session, endpoint.id)


def save(session: Session, endpoint: Endpoint) -> None:
    """Writes every changeable column of an endpoint from ``lock_live``."""
    values = {key: getattr(endpoint, key) for key in _CHANGEABLE}
    values["_id"] = endpoint.id
    session.connection().execute(_SAVE, values)
    note_written(session, endpoint.id)


_LOCK_NAMESPACE = select(Account.id).where(Account.name == bindparam("namespace")).with_for_update()


def lock_namespace(session: Session, namespace: str) -> str | None:
    """Serializes quota checks within one namespace; the account's id, or None when there is no such one."""
    found: str | None = session.connection().execute(_LOCK_NAMESPACE, {"namespace": namespace}).scalar()
    return found


# Live, unpaused endpoints' accelerators of one type (scaled-to-zero ones count, as on the Hub), as a scalar
# subquery that rides on another statement; ``usage_params`` fills it. Built once (building it per request
# showed in CREATE's profile).
ACCELERATORS_IN_USE = (
    select(func.coalesce(func.sum(Endpoint.accelerators), 0))
    .where(
        Endpoint.namespace == bindparam("usage_namespace"),
        Endpoint.quota_key == bindparam("usage_quota_key"),
        Endpoint.deleted_at.is_(None),
        Endpoint.paused.is_(False),
    )
    .scalar_subquery()
)


def usage_params(namespace: str, quota_key: str) -> dict[str, str]:
    return {"usage_namespace": namespace, "usage_quota_key": quota_key}


def usage_by_compute(session: Session, namespace: str) -> dict[str, int]:
    stmt = (
        select(Endpoint.quota_key, func.sum(Endpoint.accelerators))
        .where(Endpoint.namespace == namespace, Endpoint.deleted_at.is_(None), Endpoint.paused.is_(False))
        .group_by(Endpoint.quota_key)
    )
    return {quota_key: int(total) for quota_key, total in session.execute(stmt).all()}


_HUB_TOKEN = select(Account.hub_token).where(Account.name == bindparam("namespace"))


def hub_token_of(session: Session, namespace: str) -> bytes | None:
    """The namespace's sealed Hub token, if one is set."""
    sealed: bytes | None = session.scalar(_HUB_TOKEN, {"namespace": namespace})
    return sealed
