from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import ContextDep, RequestContext
from api.identity import service
from api.identity.schemas import (
    HubTokenSet,
    HubTokenState,
    OrgCreate,
    OrgList,
    OrgRead,
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenRevoked,
    UserCreate,
    UserRead,
    WhoAmI,
)
from api.responses import FastJSONResponse
from api.schemas import documented, errors

router = APIRouter(prefix="/api", tags=["identity"], default_response_class=FastJSONResponse)
NAMED = errors(400, 403, 404)  # a route on a user, org, token or namespace, by name


@router.get("/whoami-v2", response_model=None, responses=documented(WhoAmI, "The caller."))
def whoami(ctx: ContextDep) -> dict[str, Any]:
    """Who the token belongs to, shaped as the Hub's whoami-v2 (the client reads the default namespace here)."""
    with ctx.unit(read_only=True, data_plane_token_ok=True) as unit:
        return service.whoami(unit.principal)


@router.post("/users", response_model=None, responses={**documented(UserRead, "The user."), **errors(400, 403, 409)})
def create_user(body: UserCreate, ctx: ContextDep) -> dict[str, Any]:
    """Create a user (admin only). Its name becomes a namespace."""
    with ctx.unit() as unit:
        unit.principal.require_admin()
        return service.create_user(unit.session, body=body, ctx=unit.audit, now=unit.now)


@router.post("/orgs", response_model=None, responses={**documented(OrgRead, "The org."), **errors(400, 403, 409)})
def create_org(body: OrgCreate, ctx: ContextDep) -> dict[str, Any]:
    """Create an org with its members (admin only). Members reach the org's namespace."""
    with ctx.unit() as unit:
        unit.principal.require_admin()
        return service.create_org(unit.session, body=body, ctx=unit.audit, now=unit.now)


@router.get("/orgs", response_model=None, responses={**documented(OrgList, "The orgs."), **errors(403)})
def list_orgs(ctx: ContextDep) -> dict[str, Any]:
    """The orgs you belong to, with their members (admins: every org)."""
    with ctx.unit(read_only=True) as unit:
        return {"items": service.list_orgs(unit.session, principal=unit.principal)}


@router.get("/orgs/{org}", response_model=None, responses={**documented(OrgRead, "The org and its members."), **NAMED})
def get_org(org: str, ctx: ContextDep) -> dict[str, Any]:
    """An org and its members (its members and admins; anyone else gets 403, whether or not it exists)."""
    with ctx.unit(read_only=True) as unit:
        return service.get_org(unit.session, name=org, principal=unit.principal)


@router.put(
    "/orgs/{org}/members/{user}",
    response_model=None,
    responses={**documented(OrgRead, "The org, with the member."), **NAMED},
)
def add_org_member(org: str, user: str, ctx: ContextDep) -> dict[str, Any]:
    """Add a user to an org (an admin or a member of the org); adding a member again changes nothing."""
    return _change_member(ctx, org=org, user=user, present=True)


@router.delete(
    "/orgs/{org}/members/{user}",
    response_model=None,
    responses={**documented(OrgRead, "The org, without the member."), **NAMED},
)
def remove_org_member(org: str, user: str, ctx: ContextDep) -> dict[str, Any]:
    """Remove a user from an org (an admin or a member of the org): they lose its namespace at once."""
    return _change_member(ctx, org=org, user=user, present=False)


def _change_member(ctx: RequestContext, *, org: str, user: str, present: bool) -> dict[str, Any]:
    with ctx.unit() as unit:
        view, user_id = service.change_member(
            unit.session,
            org_name=org,
            username=user,
            present=present,
            principal=unit.principal,
            ctx=unit.audit,
            now=unit.now,
        )
        tokens = service.token_ids_of(unit.session, user_id)
    for token_id in tokens:  # committed: the member's next call here sees their new namespaces
        ctx.state.auth.forget(token_id)
    return view


@router.post(
    "/tokens", response_model=None, responses={**documented(TokenCreated, "The token, shown this once."), **NAMED}
)
def create_token(body: TokenCreate, ctx: ContextDep) -> dict[str, Any]:
    """Create an API token for yourself (or, as admin, for anyone). The token is shown only in this response."""
    with ctx.unit() as unit:
        return service.create_token(unit.session, body=body, principal=unit.principal, ctx=unit.audit, now=unit.now)


@router.get("/tokens", response_model=None, responses={**documented(TokenList, "The tokens."), **NAMED})
def list_tokens(ctx: ContextDep, user: Annotated[str | None, Query(max_length=64)] = None) -> dict[str, Any]:
    """Your tokens (admins: everyone's, or one user's with ?user=). Token values are never shown again."""
    with ctx.unit(read_only=True) as unit:
        return {"items": service.list_tokens(unit.session, principal=unit.principal, user=user)}


@router.delete("/tokens/{token_id}", response_model=None, responses={**documented(TokenRevoked, "Revoked."), **NAMED})
def revoke_token(token_id: str, ctx: ContextDep) -> dict[str, Any]:
    """Revoke a token at once."""
    with ctx.unit() as unit:
        revoked = service.revoke_token(
            unit.session, token_id=token_id, principal=unit.principal, ctx=unit.audit, now=unit.now
        )
    ctx.state.auth.forget(token_id)
    return revoked


@router.put(
    "/namespaces/{namespace}/hub-token",
    response_model=None,
    responses={**documented(HubTokenState, "Stored."), **NAMED},
)
def set_hub_token(namespace: str, body: HubTokenSet, ctx: ContextDep) -> dict[str, Any]:
    """Set the namespace's Hugging Face token, used for gated and private models of its endpoints (a member
    or an admin). Stored encrypted and never returned; an endpoint's own HF_TOKEN secret takes precedence."""
    with ctx.unit() as unit:
        unit.principal.require_namespace(namespace)
        state = service.set_hub_token(
            unit.session, namespace=namespace, token=body.token, box=ctx.state.box, ctx=unit.audit, now=unit.now
        )
    ctx.state.hub.forget_token(namespace)  # committed: this process's next create reads the new token
    return state


@router.get(
    "/namespaces/{namespace}/hub-token",
    response_model=None,
    responses={**documented(HubTokenState, "Whether one is set."), **NAMED},
)
def get_hub_token(namespace: str, ctx: ContextDep) -> dict[str, Any]:
    """Whether the namespace has a Hub token, and since when (never the token itself)."""
    with ctx.unit(read_only=True) as unit:
        unit.principal.require_namespace(namespace)
        return service.hub_token_state(unit.session, namespace=namespace)


@router.delete(
    "/namespaces/{namespace}/hub-token",
    response_model=None,
    responses={**documented(HubTokenState, "Forgotten."), **NAMED},
)
def delete_hub_token(namespace: str, ctx: ContextDep) -> dict[str, Any]:
    """Forget the namespace's Hub token."""
    with ctx.unit() as unit:
        unit.principal.require_namespace(namespace)
        state = service.set_hub_token(
            unit.session, namespace=namespace, token=None, box=ctx.state.box, ctx=unit.audit, now=unit.now
        )
    ctx.state.hub.forget_token(namespace)
    return state
