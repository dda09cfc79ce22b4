"""``create_app(settings)``: the API as an ASGI app. No work at import time."""

from __future__ import annotations

import gc
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException
from starlette.responses import Response

from api import bootstrap
from api.analytics.routes import router as analytics_router
from api.audit.routes import router as audit_router
from api.auth.service import Authenticator
from api.catalog.routes import router as catalog_router
from api.console import mount_console
from api.deps import AppState
from api.endpoint.routes import router as endpoint_router
from api.endpoint.service import Catalogs
from api.endpoint.watch import FeedHub
from api.errors import DaisError
from api.hardware.routes import router as hardware_router
from api.identity.routes import router as identity_router
from api.middleware import RequestContextMiddleware, current_request_id
from api.recommendation.routes import router as hub_router
from api.responses import FastJSONResponse
from api.schemas import EVERY_ROUTE
from api.usage.routes import router as usage_router
from api.validation import validation_error
from core.db.changes import LocalBus
from core.db.crypto import SecretBox
from core.db.models import FeedEvent
from core.db.outage import RETRY_AFTER_SECONDS, describe, unavailable
from core.db.session import make_engine, make_sessionmaker
from core.domain.catalog import load_engine_catalog, load_hardware_catalog, load_model_catalog
from core.domain.timefmt import utc_now
from core.kube.client import Kube, api_client
from core.log_store import open_log_store
from core.settings import Settings
from hub.resolver import HubResolver

log = logging.getLogger("dais.api")


def build_state(
    settings: Settings,
    *,
    sessions: sessionmaker[Session] | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> AppState:
    read_sessions = None
    if sessions is None:
        engine = make_engine(
            settings.effective_database_url,
            pool_size=settings.db_pool_size,
            pool_timeout=settings.db_pool_timeout_seconds,
        )
        sessions = make_sessionmaker(engine)
        if not settings.is_sqlite:  # SQLite: every transaction is BEGIN IMMEDIATE by design; keep it
            read_sessions = make_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"))
    engines = load_engine_catalog(settings.engine_catalog)
    catalogs = Catalogs(
        hardware=load_hardware_catalog(
            settings.hardware_catalog,
            default_quota=settings.default_quota_accelerators,
            machine=settings.runtime == "local",
        ),
        engines=engines,
        models=load_model_catalog(settings.model_catalog, engines=engines),
        max_replica_ceiling=settings.max_replica_ceiling,
        containers=settings.runtime != "local",
    )
    bus = None
    if settings.is_sqlite:  # one process (dais serve): the feed's writers run here and wake the hub in-process
        bus = LocalBus()
        bus.attach(sessions, rows=(FeedEvent,))
    return AppState(
        settings=settings,
        sessions=sessions,
        feed=FeedHub(sessions, None if settings.is_sqlite else settings.effective_database_url, bus),
        kube=_kube(settings),
        log_store=open_log_store(settings.logs, clock=clock),
        read_sessions=read_sessions,
        catalogs=catalogs,
        box=SecretBox(bootstrap.secret_key(settings)),
        auth=Authenticator(ttl_s=settings.auth_cache_seconds),
        hub=HubResolver.from_settings(settings.hub, catalogs.hardware, token_ttl_s=settings.auth_cache_seconds),
        clock=clock,
    )


def _kube(settings: Settings) -> Kube | None:
    """The cluster's API, when replicas run there: the logs route reads the pods' live logs through it."""
    cluster = settings.cluster
    if settings.runtime != "kubernetes" or cluster is None:
        return None
    try:
        return Kube(api_client(cluster.kubeconfig, cluster.context))
    except Exception as exc:  # the API serves without it; the logs route says where lines are not read from
        log.warning("no Kubernetes access (%s): the logs route shows no live pod logs", exc)
        return None


def create_app(settings: Settings, *, state: AppState | None = None, access_log: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        # Start-up objects (frameworks, models, catalogs) live forever: move them out of the collector's
        # view, so full collections scan only request-time objects (a ~50 ms pause otherwise).
        gc.collect()
        gc.freeze()
        yield
        app.state.dais.feed.close()

    app = FastAPI(
        lifespan=lifespan,
        title="Dais",
        version="0.1.0",
        description="Self-hosted Inference Endpoints. Speaks the Hugging Face Inference Endpoints v2 dialect.",
        default_response_class=FastJSONResponse,
        responses=EVERY_ROUTE,
    )
    app.state.dais = state or build_state(settings)
    app.add_middleware(RequestContextMiddleware, access_log=access_log)
    app.include_router(endpoint_router)
    app.include_router(hardware_router)
    app.include_router(identity_router)
    app.include_router(hub_router)
    app.include_router(audit_router)
    app.include_router(usage_router)
    app.include_router(catalog_router)
    app.include_router(analytics_router)
    _document_errors_as_answered(app)
    _install_error_handlers(app)
    _install_operations(app)
    mount_console(app)
    return app


def _document_errors_as_answered(app: FastAPI) -> None:
    """Bad input is a 400 in the API's error shape (``api.validation``), never FastAPI's 422: the document
    leaves out the 422 FastAPI declares for every route with parameters."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            for operations in document["paths"].values():
                for operation in operations.values():
                    operation["responses"].pop("422", None)
            for unused in ("HTTPValidationError", "ValidationError"):
                document["components"]["schemas"].pop(unused, None)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _error(
    status: int, message: str, *, retry_after: int | None = None, headers: Mapping[str, str] | None = None
) -> FastJSONResponse:
    sent = {**(headers or {}), **({"Retry-After": str(retry_after)} if retry_after is not None else {})}
    return FastJSONResponse({"error": message, "statusCode": status}, status_code=status, headers=sent or None)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DaisError)
    async def dais_error(_: Request, exc: DaisError) -> Response:
        return FastJSONResponse(exc.body(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        error = validation_error(exc.errors())
        return FastJSONResponse(error.body(), status_code=error.status_code)

    @app.exception_handler(DataError)
    async def unstorable(_: Request, exc: DataError) -> Response:
        # Safety net under validation: a value the database cannot store is the caller's error, not ours.
        detail = str(exc.orig).splitlines()[0] if exc.orig else "invalid value"
        return _error(400, f"a value cannot be stored ({detail}): check text for NUL characters and numbers for range")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        headers = exc.headers
        if exc.status_code == 405 and (methods := _methods_at(app, request.url.path)):
            headers = {"Allow": ", ".join(sorted(methods))}  # Starlette's names the first route's only
        return _error(exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(DBAPIError)
    async def database_error(_: Request, exc: DBAPIError) -> Response:
        if not unavailable(exc):
            return _crash(exc)
        # An outage: the engine's watch (core.db.outage) logs its start and end once; the client retries.
        return _error(
            503,
            f"the database is unavailable (restarting or unreachable): retry in {RETRY_AFTER_SECONDS} s",
            retry_after=RETRY_AFTER_SECONDS,
        )

    warned_at = -math.inf

    @app.exception_handler(PoolTimeout)
    async def pool_exhausted(_: Request, exc: PoolTimeout) -> Response:
        nonlocal warned_at
        if time.monotonic() - warned_at >= 10:  # under overload: a line every 10 s, not one per request
            warned_at = time.monotonic()
            log.warning("no free database connection within DAIS_DB_POOL_TIMEOUT_SECONDS: %s", exc)
        return _error(
            503,
            "the API has more requests at once than database connections (DAIS_DB_POOL_SIZE): retry in 1 s",
            retry_after=1,
        )

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception) -> Response:
        return _crash(exc)


def _methods_at(app: FastAPI, path: str) -> set[str]:
    """The methods the API document lists at ``path``."""
    methods: set[str] = set()
    for template, operations in app.openapi()["paths"].items():
        parts = re.split(r"(\{[^}]+\})", template)
        if re.fullmatch("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts), path):
            methods |= {method.upper() for method in operations if method in _METHODS}
    return methods


_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})


def _crash(exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return _error(500, f"internal error (request id {current_request_id()}); nothing was changed")


def _install_operations(app: FastAPI) -> None:
    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz(request: Request) -> Response:
        state: AppState = request.app.state.dais
        if state.draining.is_set():  # first step of a graceful stop: load balancers send no new requests
            return _error(503, "draining: this API process is stopping; send requests to another replica")
        try:
            with state.sessions() as session:
                session.execute(text("SELECT 1"))
        except Exception as exc:  # any database failure means "not ready", with the reason
            return _error(503, f"database unreachable: {describe(exc)}", retry_after=RETRY_AFTER_SECONDS)
        return FastJSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
