from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db.models import Account, Membership


def by_name(session: Session, name: str) -> Account | None:
    return session.scalars(select(Account).where(Account.name == name)).first()


def users_named(session: Session, names: list[str]) -> list[Account]:
    return list(session.scalars(select(Account).where(Account.name.in_(names), Account.kind == "user")))


def add_member(session: Session, *, org_id: str, user_id: str) -> None:
    session.add(Membership(org_id=org_id, user_id=user_id))
