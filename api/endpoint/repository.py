from __future__ import annotations

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from api.db.models import Account, Endpoint, EndpointStatus

Pair = tuple[Endpoint, EndpointStatus | None]


def _live() -> Select[Endpoint, EndpointStatus]:
    return (
        select(Endpoint, EndpointStatus)
        .outerjoin(EndpointStatus, EndpointStatus.endpoint_id == Endpoint.id)
        .where(Endpoint.deleted_at.is_(None))
    )


def list_in(session: Session, namespace: str) -> list[Pair]:
    stmt = _live().where(Endpoint.namespace == namespace).order_by(Endpoint.name)
    return [(e, s) for e, s in session.execute(stmt).all()]


def get_live(session: Session, namespace: str, name: str) -> Pair | None:
    stmt = _live().where(Endpoint.namespace == namespace, Endpoint.name == name)
    row = session.execute(stmt).first()
    return (row[0], row[1]) if row else None


def lock_live(session: Session, namespace: str, name: str) -> Endpoint | None:
    """Row lock for the read-modify-write of an update (SQLite: BEGIN IMMEDIATE already serializes)."""
    stmt = (
        select(Endpoint)
        .where(Endpoint.namespace == namespace, Endpoint.name == name, Endpoint.deleted_at.is_(None))
        .with_for_update()
    )
    return session.scalars(stmt).first()


def status_of(session: Session, endpoint_id: str) -> EndpointStatus | None:
    return session.get(EndpointStatus, endpoint_id)


def lock_namespace(session: Session, namespace: str) -> Account | None:
    """Serializes quota checks within one namespace."""
    stmt = select(Account).where(Account.name == namespace).with_for_update()
    return session.scalars(stmt).first()


def accelerators_in_use(session: Session, namespace: str, quota_key: str, *, excluding: str | None) -> int:
    stmt = select(func.coalesce(func.sum(Endpoint.accelerators), 0)).where(
        Endpoint.namespace == namespace,
        Endpoint.quota_key == quota_key,
        Endpoint.deleted_at.is_(None),
        Endpoint.paused.is_(False),
    )
    if excluding is not None:
        stmt = stmt.where(Endpoint.id != excluding)
    return int(session.scalar(stmt) or 0)


def usage_by_compute(session: Session, namespace: str) -> dict[str, int]:
    stmt = (
        select(Endpoint.quota_key, func.sum(Endpoint.accelerators))
        .where(Endpoint.namespace == namespace, Endpoint.deleted_at.is_(None), Endpoint.paused.is_(False))
        .group_by(Endpoint.quota_key)
    )
    return {quota_key: int(total) for quota_key, total in session.execute(stmt).all()}
