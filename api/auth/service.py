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
    if found.revoked_at is not None:
        raise Unauthorized("this token was revoked: create a new one with `dais tokens create`")
    if found.expires_at is not None and found.expires_at <= now:
        raise Unauthorized("this token has expired: create a new one with `dais tokens create`")
    orgs = found.org_names.split(",") if found.org_names else []
    return Principal(
        account_id=found.user_id,
        name=found.user_name,
        is_admin=found.is_admin,
        namespaces=frozenset([found.user_name, *orgs]),
        token_id=found.token_id,
        token_name=found.token_name,
        endpoint_scope=found.endpoint_id,
    )
