"""Bearer-token lookup shared by the API and the gateway: a token is stored only as its SHA-256 digest
(high-entropy secrets need no slow hash), and one query returns it with its user and the user's orgs."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Row, Select, bindparam, func, select
from sqlalchemy.orm import Session, aliased

from core.db.models import Account, ApiToken, Membership


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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
