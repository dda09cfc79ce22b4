"""Users, orgs and API tokens. Tokens are shown once, at creation; only their digest is stored."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.audit import repository as audit
from api.audit.repository import AuditContext
from api.auth import repository as token_repo
from api.auth.principal import Principal
from api.endpoint import repository as endpoint_repo
from api.errors import BadRequest, Conflict, Forbidden, NotFound
from api.identity import repository
from api.identity.schemas import OrgCreate, TokenCreate, UserCreate
from core.db import tokens
from core.db.crypto import SecretBox
from core.db.models import Account, ApiToken
from core.domain.enums import AccountKind
from core.domain.timefmt import to_client_time


def _add_account(session: Session, account: Account) -> None:
    session.add(account)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"namespace {account.name!r} is taken by a user or an org: pick another name") from None


def create_user(session: Session, *, body: UserCreate, ctx: AuditContext, now: datetime) -> dict[str, Any]:
    user = Account(id=uuid.uuid4().hex, name=body.name, kind=AccountKind.USER, is_admin=body.admin, created_at=now)
    _add_account(session, user)
    audit.record(
        session,
        ctx=ctx,
        action="user.create",
        now=now,
        namespace=body.name,
        diff=[{"path": "admin", "old": None, "new": body.admin}],
    )
    return {"id": user.id, "name": user.name, "type": "user", "isAdmin": user.is_admin}


def create_org(session: Session, *, body: OrgCreate, ctx: AuditContext, now: datetime) -> dict[str, Any]:
    members = repository.users_named(session, body.members)
    missing = sorted(set(body.members) - {m.name for m in members})
    if missing:
        raise BadRequest(
            f"members: no such user(s) {', '.join(missing)}: create them first with POST /api/users",
            fields=[{"field": "members", "message": f"unknown users {missing}"}],
        )
    org = Account(id=uuid.uuid4().hex, name=body.name, kind=AccountKind.ORG, is_admin=False, created_at=now)
    _add_account(session, org)
    for member in members:
        repository.add_member(session, org_id=org.id, user_id=member.id)
    audit.record(
        session,
        ctx=ctx,
        action="org.create",
        now=now,
        namespace=body.name,
        diff=[{"path": "members", "old": None, "new": sorted(body.members)}],
    )
    return {"id": org.id, "name": org.name, "type": "org", "members": sorted(body.members)}


def issue_token(
    session: Session,
    *,
    user: Account,
    name: str,
    expires_at: datetime | None,
    endpoint_id: str | None,
    now: datetime,
    secret: str | None = None,
) -> tuple[ApiToken, str]:
    """Stores a token's digest; returns the row and the plain token, which is never stored."""
    plain = secret or tokens.new_token()
    row = ApiToken(
        id=uuid.uuid4().hex,
        user_id=user.id,
        name=name,
        token_hash=tokens.digest(plain),
        prefix=tokens.display_prefix(plain),
        endpoint_id=endpoint_id,
        created_at=now,
        expires_at=expires_at,
    )
    token_repo.add_token(session, row)
    return row, plain


def create_token(
    session: Session, *, body: TokenCreate, principal: Principal, ctx: AuditContext, now: datetime
) -> dict[str, Any]:
    username = body.user or principal.name
    if username != principal.name:
        principal.require_admin()
    user = repository.by_name(session, username)
    if user is None or user.kind != AccountKind.USER:
        raise NotFound(f"user {username!r} not found: create it with POST /api/users")
    endpoint_id = None
    if body.endpoint is not None:
        namespace, name = body.endpoint.split("/", 1)
        if not user.is_admin and namespace != user.name and namespace not in token_repo.org_names_of(session, user.id):
            raise Forbidden(f"user {username!r} is not a member of namespace {namespace!r}")
        found = endpoint_repo.get_live(session, namespace, name)
        if found is None:
            raise NotFound(f"endpoint {body.endpoint} not found")
        endpoint_id = found.id
    expires_at = now + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    row, plain = issue_token(
        session, user=user, name=body.name, expires_at=expires_at, endpoint_id=endpoint_id, now=now
    )
    audit.record(
        session,
        ctx=ctx,
        action="token.create",
        now=now,
        namespace=username,
        diff=[{"path": "token", "old": None, "new": {"id": row.id, "name": row.name}}],
    )
    return {**_token_view(row, username, body.endpoint), "token": plain}


def list_tokens(session: Session, *, principal: Principal, user: str | None) -> list[dict[str, Any]]:
    if principal.is_admin:
        account = repository.by_name(session, user) if user else None
        if user and account is None:
            raise NotFound(f"user {user!r} not found")
        user_id = account.id if account else None
    else:
        if user not in (None, principal.name):
            raise Forbidden("only admins may list another user's tokens")
        user_id = principal.account_id
    return [_token_view(t, name, None) for t, name in token_repo.tokens_of(session, user_id)]


def revoke_token(
    session: Session, *, token_id: str, principal: Principal, ctx: AuditContext, now: datetime
) -> dict[str, Any]:
    row = token_repo.get_token(session, token_id)
    if row is None or (row.user_id != principal.account_id and not principal.is_admin):
        raise NotFound(f"token {token_id!r} not found")
    token_repo.revoke_token(session, token_id, now)
    audit.record(
        session,
        ctx=ctx,
        action="token.revoke",
        now=now,
        diff=[{"path": "token", "old": {"id": token_id}, "new": None}],
    )
    return {"id": token_id, "revokedAt": to_client_time(row.revoked_at or now)}


def whoami(principal: Principal) -> dict[str, Any]:
    """Shaped as the Hub's ``/api/whoami-v2``: the client needs ``type == "user"``, ``name`` and ``orgs``."""
    orgs = sorted(principal.namespaces - {principal.name})
    return {
        "type": "user",
        "id": principal.account_id,
        "name": principal.name,
        "fullname": principal.name,
        "isAdmin": principal.is_admin,
        "orgs": [{"type": "org", "name": org} for org in orgs],
        "auth": {
            "type": "access_token",
            "accessToken": {
                "displayName": principal.token_name,
                "role": "fineGrained" if principal.endpoint_scope else "write",
            },
        },
    }


def _token_view(row: ApiToken, user: str, endpoint: str | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "user": user,
        "prefix": row.prefix,
        "endpointId": row.endpoint_id,
        "endpoint": endpoint,
        "createdAt": to_client_time(row.created_at),
        "expiresAt": to_client_time(row.expires_at) if row.expires_at else None,
        "revokedAt": to_client_time(row.revoked_at) if row.revoked_at else None,
    }


def set_hub_token(
    session: Session, *, namespace: str, token: str | None, box: SecretBox, ctx: AuditContext, now: datetime
) -> dict[str, Any]:
    account = repository.by_name(session, namespace)
    if account is None:
        raise NotFound(f"namespace {namespace!r} does not exist: create the user or org first")
    account.hub_token = box.seal({"token": token}) if token is not None else None
    account.hub_token_updated_at = now if token is not None else None
    audit.record(
        session,
        ctx=ctx,
        action="namespace.hub_token.set" if token is not None else "namespace.hub_token.delete",
        now=now,
        namespace=namespace,
    )
    return {"namespace": namespace, "set": token is not None, "updatedAt": _when(account.hub_token_updated_at)}


def hub_token_state(session: Session, *, namespace: str) -> dict[str, Any]:
    account = repository.by_name(session, namespace)
    if account is None:
        raise NotFound(f"namespace {namespace!r} does not exist: create the user or org first")
    return {
        "namespace": namespace,
        "set": account.hub_token is not None,
        "updatedAt": _when(account.hub_token_updated_at),
    }


def _when(moment: datetime | None) -> str | None:
    return to_client_time(moment) if moment else None
