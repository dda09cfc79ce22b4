from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db.models import Account, Endpoint, Membership


def by_name(session: Session, name: str) -> Account | None:
    return session.scalars(select(Account).where(Account.name == name)).first()


def users_named(session: Session, names: list[str]) -> list[Account]:
    return list(session.scalars(select(Account).where(Account.name.in_(names), Account.kind == "user")))


def add_member(session: Session, *, org_id: str, user_id: str) -> None:
    session.add(Membership(org_id=org_id, user_id=user_id))


def remove_member(session: Session, *, org_id: str, user_id: str) -> bool:
    """Whether there was such a membership to remove."""
    found = session.get(Membership, (org_id, user_id))
    if found is None:
        return False
    session.delete(found)
    session.flush()
    return True


def is_member(session: Session, *, org_id: str, user_id: str) -> bool:
    return session.get(Membership, (org_id, user_id)) is not None


def member_names(session: Session, org_id: str) -> list[str]:
    stmt = (
        select(Account.name)
        .join(Membership, Membership.user_id == Account.id)
        .where(Membership.org_id == org_id)
        .order_by(Account.name)
    )
    return list(session.scalars(stmt))


def orgs_visible_to(session: Session, *, user_id: str | None) -> list[Account]:
    """Every org (``user_id`` None: an admin's view), or the orgs ``user_id`` belongs to; by name."""
    stmt = select(Account).where(Account.kind == "org").order_by(Account.name)
    if user_id is not None:
        stmt = stmt.join(Membership, Membership.org_id == Account.id).where(Membership.user_id == user_id)
    return list(session.scalars(stmt))


def endpoint_names(session: Session, endpoint_ids: list[str]) -> dict[str, str]:
    """``namespace/name`` of each endpoint id (deleted endpoints' too, while their row is kept)."""
    if not endpoint_ids:
        return {}
    rows = session.execute(
        select(Endpoint.id, Endpoint.namespace, Endpoint.name).where(Endpoint.id.in_(endpoint_ids))
    ).all()
    return {row.id: f"{row.namespace}/{row.name}" for row in rows}
