"""API tokens: random, shown once, stored only as their SHA-256 digest (high-entropy secrets need no slow hash).
The API mints them; the API and the gateway look them up, one query returning a token with its user and the
user's orgs."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from sqlalchemy import Row, Select, bindparam, func, select
from sqlalchemy.orm import Session, aliased

from core.db.models import Account, ApiToken, Membership

TOKEN_PREFIX = "dais_"  # noqa: S105 (a prefix, not a secret)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def display_prefix(token: str) -> str:
    """What lists show to recognise a token by."""
    return token[: len(TOKEN_PREFIX) + 4]


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
