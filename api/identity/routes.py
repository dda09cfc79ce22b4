from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.auth.principal import Principal
from api.deps import AuditDep, NowDep, PrincipalDep, SessionDep, get_principal
from api.identity import service
from api.identity.schemas import OrgCreate, TokenCreate, UserCreate
from api.responses import FastJSONResponse

router = APIRouter(prefix="/api", tags=["identity"], default_response_class=FastJSONResponse)


@router.get("/whoami-v2")
def whoami(principal: Annotated[Principal, Depends(get_principal)]) -> dict[str, Any]:
    """Who the token belongs to, shaped as the Hub's whoami-v2 (the client reads the default namespace here)."""
    return service.whoami(principal)


@router.post("/users")
def create_user(
    body: UserCreate, session: SessionDep, principal: PrincipalDep, ctx: AuditDep, now: NowDep
) -> dict[str, Any]:
    """Create a user (admin only). Its name becomes a namespace."""
    principal.require_admin()
    return service.create_user(session, body=body, ctx=ctx, now=now)


@router.post("/orgs")
def create_org(
    body: OrgCreate, session: SessionDep, principal: PrincipalDep, ctx: AuditDep, now: NowDep
) -> dict[str, Any]:
    """Create an org with its members (admin only). Members reach the org's namespace."""
    principal.require_admin()
    return service.create_org(session, body=body, ctx=ctx, now=now)


@router.post("/tokens")
def create_token(
    body: TokenCreate, session: SessionDep, principal: PrincipalDep, ctx: AuditDep, now: NowDep
) -> dict[str, Any]:
    """Create an API token for yourself (or, as admin, for anyone). The token is shown only in this response."""
    return service.create_token(session, body=body, principal=principal, ctx=ctx, now=now)


@router.get("/tokens")
def list_tokens(
    session: SessionDep, principal: PrincipalDep, user: Annotated[str | None, Query(max_length=64)] = None
) -> dict[str, Any]:
    """Your tokens (admins: everyone's, or one user's with ?user=). Token values are never shown again."""
    return {"items": service.list_tokens(session, principal=principal, user=user)}


@router.delete("/tokens/{token_id}")
def revoke_token(
    token_id: str, session: SessionDep, principal: PrincipalDep, ctx: AuditDep, now: NowDep
) -> dict[str, Any]:
    """Revoke a token at once."""
    return service.revoke_token(session, token_id=token_id, principal=principal, ctx=ctx, now=now)
