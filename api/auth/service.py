from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from api.auth import repository, tokens
from api.auth.principal import Principal
from api.errors import Unauthorized


def authenticate(session: Session, *, authorization: str | None, now: datetime) -> Principal:
    if not authorization:
        raise Unauthorized("missing token: send 'Authorization: Bearer <token>' (create one with `dais tokens create`)")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("malformed Authorization header: expected 'Bearer <token>'")
    found = repository.token_with_user(session, tokens.digest(token.strip()))
    if found is None:
        raise Unauthorized("invalid token: check it, or create a new one with `dais tokens create`")
    api_token, user, orgs = found
    if api_token.revoked_at is not None:
        raise Unauthorized("this token was revoked: create a new one with `dais tokens create`")
    if api_token.expires_at is not None and api_token.expires_at <= now:
        raise Unauthorized("this token has expired: create a new one with `dais tokens create`")
    return Principal(
        account_id=user.id,
        name=user.name,
        is_admin=user.is_admin,
        namespaces=frozenset([user.name, *orgs]),
        token_id=api_token.id,
        token_name=api_token.name,
        endpoint_scope=api_token.endpoint_id,
    )
