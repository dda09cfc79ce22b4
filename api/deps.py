"""Request-scoped dependencies. ``SessionDep`` is the transaction boundary: commit on success, else roll back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session, sessionmaker

from api.audit.repository import AuditContext
from api.auth.principal import Principal
from api.auth.service import authenticate
from api.crypto import SecretBox
from api.endpoint.service import Catalogs
from api.middleware import current_request_id
from api.settings import Settings


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class AppState:
    """Everything a request needs that outlives it; built once in ``create_app``."""

    settings: Settings
    sessions: sessionmaker[Session]
    catalogs: Catalogs
    box: SecretBox
    clock: Callable[[], datetime] = utc_now


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.dais
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    with state.sessions() as session, session.begin():
        yield session


# scope="function": commit before the response is sent, so a 200 always means "stored".
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_now(state: StateDep) -> datetime:
    return state.clock()


NowDep = Annotated[datetime, Depends(get_now)]


def get_principal(session: SessionDep, now: NowDep, authorization: Annotated[str | None, Header()] = None) -> Principal:
    return authenticate(session, authorization=authorization, now=now)


def get_control_principal(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    principal.require_control_plane()
    return principal


PrincipalDep = Annotated[Principal, Depends(get_control_principal)]


def get_audit_context(request: Request, principal: PrincipalDep) -> AuditContext:
    client = request.client
    return AuditContext(
        actor=principal.name,
        request_id=current_request_id(),
        source_address=client.host if client else None,
    )


AuditDep = Annotated[AuditContext, Depends(get_audit_context)]
