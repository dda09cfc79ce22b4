from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.db.models import Account, ApiToken, Membership


def org_names_of(session: Session, user_id: str) -> list[str]:
    stmt = (
        select(Account.name)
        .join(Membership, Membership.org_id == Account.id)
        .where(Membership.user_id == user_id)
        .order_by(Account.name)
    )
    return list(session.scalars(stmt))


def add_token(session: Session, token: ApiToken) -> None:
    session.add(token)
    session.flush()


def tokens_of(session: Session, user_id: str | None) -> list[tuple[ApiToken, str]]:
    stmt = select(ApiToken, Account.name).join(Account, Account.id == ApiToken.user_id).order_by(ApiToken.created_at)
    if user_id is not None:
        stmt = stmt.where(ApiToken.user_id == user_id)
    return [(t, n) for t, n in session.execute(stmt).all()]


def get_token(session: Session, token_id: str) -> ApiToken | None:
    return session.get(ApiToken, token_id)


def revoke_token(session: Session, token_id: str, now: datetime) -> None:
    session.execute(
        update(ApiToken).where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None)).values(revoked_at=now)
    )
