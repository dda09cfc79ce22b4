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


def _org(session: Session, name: str) -> Account:
    org = repository.by_name(session, name)
    if org is None or org.kind != AccountKind.ORG:
        raise NotFound(f"org {name!r} not found: an admin creates orgs with POST /api/orgs")
    return org


def _org_view(session: Session, org: Account) -> dict[str, Any]:
    return {"id": org.id, "name": org.name, "type": "org", "members": repository.member_names(session, org.id)}


def list_orgs(session: Session, *, principal: Principal) -> list[dict[str, Any]]:
    """The orgs the caller belongs to (an admin: every org), each with its members."""
    orgs = repository.orgs_visible_to(session, user_id=None if principal.is_admin else principal.account_id)
    return [_org_view(session, org) for org in orgs]


def get_org(session: Session, *, name: str, principal: Principal) -> dict[str, Any]:
    """An org and its members, for its members and admins (anyone else: 403, whether or not it exists)."""
    principal.require_namespace(name)
    return _org_view(session, _org(session, name))


def change_member(
    session: Session,
    *,
    org_name: str,
    username: str,
    present: bool,
    principal: Principal,
    ctx: AuditContext,
    now: datetime,
) -> tuple[dict[str, Any], str]:
    """Adds (``present``) or removes a member, as an admin or a member of the org. Adding a member twice
    changes nothing; removing a user who is not a member is 404. Returns the org and the user's id (whose
    cached principals must be forgotten: their namespaces changed)."""
    principal.require_namespace(org_name)
    org = _org(session, org_name)
    user = repository.by_name(session, username)
    if user is None or user.kind != AccountKind.USER:
        raise NotFound(f"user {username!r} not found: an admin creates users with POST /api/users")
    member = repository.is_member(session, org_id=org.id, user_id=user.id)
    if present and not member:
        repository.add_member(session, org_id=org.id, user_id=user.id)
        session.flush()
    elif not present:
        if not member:
            raise NotFound(f"user {username!r} is not a member of org {org_name!r}")
        repository.remove_member(session, org_id=org.id, user_id=user.id)
    if present != member:
        audit.record(
            session,
            ctx=ctx,
            action="org.member.add" if present else "org.member.remove",
            now=now,
            namespace=org_name,
            diff=[{"path": "members", "old": None if present else username, "new": username if present else None}],
        )
    return _org_view(session, org), user.id


def token_ids_of(session: Session, user_id: str) -> list[str]:
    return [token.id for token, _ in token_repo.tokens_of(session, user_id)]


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
    found = token_repo.tokens_of(session, user_id)
    scopes = repository.endpoint_names(session, [t.endpoint_id for t, _ in found if t.endpoint_id])
    return [_token_view(t, name, scopes.get(t.endpoint_id or "")) for t, name in found]


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
