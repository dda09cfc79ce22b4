"""Request-scoped dependencies.

Every route handler is a plain ``def``, so FastAPI runs it in one worker thread; the dependencies here
are ``async`` and do no I/O, so they cost no extra thread hop. All of a request's I/O happens inside
``ctx.unit()``, in the handler's thread: one transaction that authenticates the caller, does the work
and commits before the response is built (a 2xx always means "stored"), or rolls back on any error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from api.audit.repository import AuditContext
from api.auth.principal import Principal
from api.auth.service import Authenticator, bearer_token
from api.endpoint.service import Catalogs
from api.endpoint.watch import FeedHub
from api.middleware import current_request_id
from core.db.crypto import SecretBox
from core.domain.timefmt import utc_now
from core.kube.client import Kube
from core.log_store import LogStore
from core.settings import Settings
from hub.resolver import HubResolver


@dataclass
class AppState:
    """Everything a request needs that outlives it; built once in ``create_app``."""

    settings: Settings
    sessions: sessionmaker[Session]
    catalogs: Catalogs
    box: SecretBox
    auth: Authenticator
    hub: HubResolver
    feed: FeedHub
    kube: Kube | None = None  # the Kubernetes runtime's cluster: pods' live logs
    log_store: LogStore | None = None  # the operator's VictoriaLogs: log history
    clock: Callable[[], datetime] = utc_now
    read_sessions: sessionmaker[Session] | None = None  # autocommit: reads skip BEGIN and COMMIT round trips
    draining: threading.Event = field(default_factory=threading.Event)  # set by drain()

    def drain(self) -> None:
        """The process is stopping (SIGTERM): /readyz answers 503 from now on, and the server-sent streams end,
        so that their clients reconnect (to another replica) instead of holding this one until it exits."""
        self.draining.set()
        self.feed.drain()


@dataclass(frozen=True, slots=True)
class Unit:
    """One request's unit of work: its transaction, the caller, and what the audit log needs."""

    session: Session
    principal: Principal
    audit: AuditContext
    now: datetime


@dataclass(frozen=True, slots=True)
class RequestContext:
    state: AppState
    authorization: str | None
    request_id: str
    source_address: str | None

    @contextmanager
    def unit(self, *, read_only: bool = False, data_plane_token_ok: bool = False) -> Iterator[Unit]:
        """``read_only`` units run each statement on its own (autocommit): GET and LIST make two queries
        and need no snapshot across them, and skipping BEGIN/COMMIT halves their database round trips."""
        now = self.state.clock()
        factory = (self.state.read_sessions or self.state.sessions) if read_only else self.state.sessions
        with factory() as session, session.begin():
            principal = self.state.auth.authenticate(session, authorization=self.authorization, now=now)
            if not data_plane_token_ok:
                principal.require_control_plane()
            yield Unit(
                session=session,
                principal=principal,
                audit=AuditContext(principal.name, self.request_id, self.source_address),
                now=now,
            )


_bearer = HTTPBearer(auto_error=False, description="A Dais API token: `Authorization: Bearer dais_…`")


async def get_context(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
) -> RequestContext:
    # ``credentials`` only documents the bearer scheme in OpenAPI; the raw header is read here, so a malformed
    # one gets our message rather than a bare 403. A missing or malformed one is refused now, before FastAPI
    # validates the body: 401 comes before 400. Whether the token is valid, unit() finds out.
    del credentials
    state: AppState = request.app.state.dais
    client = request.client
    authorization = request.headers.get("authorization")
    bearer_token(authorization)
    return RequestContext(
        state=state,
        authorization=authorization,
        request_id=current_request_id(),
        source_address=client.host if client else None,
    )


ContextDep = Annotated[RequestContext, Depends(get_context)]
