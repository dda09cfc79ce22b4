from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, aliased

from api.db.models import Account, ApiToken, Membership


def token_with_user(session: Session, token_hash: str) -> tuple[ApiToken, Account, list[str]] | None:
    """The token, its user and the user's org names, in one round trip (this runs on every request)."""
    org = aliased(Account)
    orgs = (
        select(func.aggregate_strings(org.name, ","))
        .join(Membership, Membership.org_id == org.id)
        .where(Membership.user_id == Account.id)
        .scalar_subquery()
    )
    stmt = (
        select(ApiToken, Account, orgs)
        .join(Account, Account.id == ApiToken.user_id)
        .where(ApiToken.token_hash == token_hash)
    )
    row = session.execute(stmt).first()
    if row is None:
        return None
    return row[0], row[1], sorted(row[2].split(",")) if row[2] else []


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
