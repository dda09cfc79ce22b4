from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, bindparam, func, select, update
from sqlalchemy.orm import Session, aliased

from api.db.models import Account, ApiToken, Membership


def _token_lookup() -> Select[Any]:
    org = aliased(Account)
    org_names = (
        select(func.aggregate_strings(org.name, ","))
        .join(Membership, Membership.org_id == org.id)
        .where(Membership.user_id == Account.id)
        .scalar_subquery()
    )
    return (
        select(
            ApiToken.id.label("token_id"),
            ApiToken.name.label("token_name"),
            ApiToken.endpoint_id,
            ApiToken.expires_at,
            ApiToken.revoked_at,
            Account.id.label("user_id"),
            Account.name.label("user_name"),
            Account.is_admin,
            org_names.label("org_names"),
        )
        .join(Account, Account.id == ApiToken.user_id)
        .where(ApiToken.token_hash == bindparam("token_hash"))
    )


# Built once: constructing this statement cost more CPU than running it (it runs on every request).
_TOKEN_LOOKUP = _token_lookup()


def token_with_user(session: Session, token_hash: str) -> Row[Any] | None:
    """The token, its user and the user's comma-joined org names, as one row in one round trip."""
    return session.execute(_TOKEN_LOOKUP, {"token_hash": token_hash}).first()


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
