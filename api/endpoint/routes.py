"""``/v2/endpoint/...``: the Inference Endpoints v2 dialect (reference §7), usable by ``huggingface_hub``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any

import anyio
import orjson
from fastapi import APIRouter, Body, Header, Query
from starlette.responses import Response, StreamingResponse

from api.audit.render import event_item
from api.deps import ContextDep
from api.endpoint import logs as log_sources
from api.endpoint import openmetrics, service
from api.endpoint.hub_calls import Answers, with_hub
from api.endpoint.render import EndpointLike, observed_of, render, render_row
from api.endpoint.schemas import (
    AuditPage,
    EndpointList,
    EndpointLogs,
    EndpointWithStatus,
    LogLineOut,
    ReplicaList,
    ReplicaLog,
    ReplicaRead,
    ScalingView,
)
from api.endpoint.watch import KEEPALIVE_S
from api.errors import BadRequest
from api.responses import FastJSONResponse
from api.schemas import Empty, documented, errors
from api.validation import require_zones
from core.db.models import Endpoint
from core.domain.enums import EndpointState
from core.domain.spec import EndpointSpec, EndpointUpdate
from core.domain.state import Observed
from core.domain.timefmt import to_client_time
from core.replica_logs import LogLine

router = APIRouter(prefix="/v2", tags=["endpoints"], default_response_class=FastJSONResponse)
EWS = documented(EndpointWithStatus, "The endpoint, with its status.")
ONE = errors(400, 403, 404)  # a route on one endpoint, by name
CREATE_EXAMPLES = {
    "gpt2": {
        "summary": "GPT-2 on one NVIDIA L4, as huggingface_hub's create_inference_endpoint sends it",
        "value": {
            "name": "my-endpoint",
            "type": "authenticated",
            "provider": {"vendor": "aws", "region": "us-east-1"},
            "compute": {
                "accelerator": "gpu",
                "instanceType": "nvidia-l4",
                "instanceSize": "x1",
                "scaling": {"minReplica": 0, "maxReplica": 1, "scaleToZeroTimeout": 15},
            },
            "model": {
                "repository": "openai-community/gpt2",
                "revision": None,
                "task": "text-generation",
                "framework": "pytorch",
                "image": {"huggingface": {}},
            },
        },
    }
}
UPDATE_EXAMPLES = {"scaling": {"summary": "Up to two replicas", "value": {"compute": {"scaling": {"maxReplica": 2}}}}}


def _json(body: bytes, endpoint: EndpointLike) -> Response:
    return Response(body, media_type="application/json", headers={"ETag": service.etag(endpoint)})


def _one(ctx: ContextDep, endpoint: Endpoint, observed: Observed | None) -> Response:
    return _json(render(endpoint, observed, engines=ctx.state.catalogs.engines), endpoint)


def _after_write(ctx: ContextDep, endpoint: Endpoint) -> Response:
    """Rendered after the commit: a transaction holding the quota lock should not spend time on JSON."""
    return _one(ctx, endpoint, observed_of(endpoint.status))


WATCH_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "model": EndpointList,
        "content": {
            "text/event-stream": {
                "schema": {"type": "string"},
                "example": 'id: 42\nevent: status\ndata: {"id": 42, "type": "status", "name": "my-endpoint", '
                '"state": "running", "message": "…", "readyReplica": 1, "targetReplica": 1, "url": "…"}\n\n',
            }
        },
        "description": "The namespace's endpoints (a page of them with `limit`). With `watch=true`, server-sent "
        "events instead: one per status change (`status`), scaling decision "
        "(`decision`) or deletion (`deleted`); `reset` when `Last-Event-ID` is older than the feed keeps.",
    }
}


@router.get(
    "/endpoint/{namespace}",
    responses={**WATCH_DOC, **errors(400, 403)},
)
def list_endpoints(
    namespace: str,
    ctx: ContextDep,
    search: Annotated[
        str | None, Query(max_length=200, description="Endpoints whose name or model contains this (any case).")
    ] = None,
    tags: Annotated[
        str | None, Query(max_length=1000, description="Comma-separated: endpoints with every one.")
    ] = None,
    state: Annotated[EndpointState | None, Query(description="Endpoints in this state.")] = None,
    cursor: Annotated[
        str | None, Query(max_length=32, description="The `next` of the previous page: the endpoints after it.")
    ] = None,
    limit: Annotated[int | None, Query(ge=1, le=500, description="At most this many (default: all).")] = None,
    watch: Annotated[
        bool,
        Query(
            description="Server-sent events instead: status changes, scaling decisions and deletions of the "
            "namespace's endpoints as they are committed. Send `Last-Event-ID` to resume."
        ),
    ] = False,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> Response:
    """All endpoints of a namespace, as ``{"items": [...]}`` (empty, not 404, when there are none), by name.
    Filters and pages on request; ``watch=true`` streams changes instead."""
    with ctx.unit(read_only=True) as unit:
        unit.principal.require_namespace(namespace)
        if watch:
            resume = _event_id(last_event_id)
        elif search is None and tags is None and state is None and cursor is None and limit is None:
            rows, page_after = list(service.list_in(unit.session, namespace=namespace)), None
        else:
            rows, page_after = service.list_filtered(
                unit.session,
                namespace=namespace,
                search=search,
                tags=[t.strip() for t in (tags or "").split(",") if t.strip()],
                state=state.value if state else None,
                cursor=cursor,
                limit=limit,
            )
    if watch:
        hub = ctx.state.feed
        start = hub.position() if resume is None else resume
        return StreamingResponse(
            hub.watch(namespace, start, resumed=resume is not None),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    engines = ctx.state.catalogs.engines
    items = b",".join(render_row(row, engines=engines) for row in rows)
    return Response(
        b'{"items":[' + items + b'],"next":' + orjson.dumps(page_after) + b"}", media_type="application/json"
    )


def _event_id(header: str | None) -> int | None:
    if header is None or not header.strip():
        return None
    try:
        return int(header)
    except ValueError:
        raise BadRequest(
            f"Last-Event-ID: {header!r} is not an event id; send the `id` of the last event received",
            fields=[{"field": "Last-Event-ID", "message": "not an integer"}],
        ) from None


@router.get(
    "/endpoint/{namespace}/{name}/replica",
    response_model=ReplicaList,
    responses={**documented(ReplicaList, "Running replicas, then recently gone ones."), **ONE},
)
def endpoint_replicas(namespace: str, name: str, ctx: ContextDep) -> ReplicaList:
    """The endpoint's replicas as the controller last observed them: id (the logs' `replica`), state, node or
    host, start, stop, restarts and the last termination's reason. Gone replicas stay listed (the latest 50)."""
    with ctx.unit(read_only=True) as unit:
        unit.principal.require_namespace(namespace)
        rows = service.replicas(unit.session, namespace=namespace, name=name)
        return ReplicaList(
            items=[
                ReplicaRead(
                    id=r.id,
                    state=r.state,
                    host=r.host,
                    started_at=r.started_at,
                    stopped_at=r.stopped_at,
                    restarts=r.restarts,
                    last_termination=r.last_termination,
                )
                for r in rows
            ]
        )


@router.post("/endpoint/{namespace}", responses={**EWS, **errors(400, 403, 404, 409)})
def create_endpoint(
    namespace: str, spec: Annotated[EndpointSpec, Body(openapi_examples=CREATE_EXAMPLES)], ctx: ContextDep
) -> Response:
    """Create an endpoint; it starts ``pending``. Unknown fields are ignored; a duplicate name is 409."""

    def run(answers: Answers) -> Endpoint:
        with ctx.unit() as unit:
            unit.principal.require_namespace(namespace)
            return service.create(
                unit.session,
                namespace=namespace,
                spec=spec,
                catalogs=ctx.state.catalogs,
                box=ctx.state.box,
                hub=ctx.state.hub,
                answers=answers,
                ctx=unit.audit,
                now=unit.now,
            )

    return _one(ctx, with_hub(run, what=f"endpoint {namespace}/{spec.name}"), None)


@router.get("/endpoint/{namespace}/{name}", responses={**EWS, **ONE})
def get_endpoint(namespace: str, name: str, ctx: ContextDep) -> Response:
    """One endpoint with its status. The ``ETag`` header carries its generation for ``If-Match``."""
    with ctx.unit(read_only=True) as unit:
        unit.principal.require_namespace(namespace)
        row = service.get(unit.session, namespace=namespace, name=name)
    return _json(render_row(row, engines=ctx.state.catalogs.engines), row)


@router.put("/endpoint/{namespace}/{name}", responses={**EWS, **ONE, **errors(412)})
def update_endpoint(
    namespace: str,
    name: str,
    patch: Annotated[EndpointUpdate, Body(openapi_examples=UPDATE_EXAMPLES)],
    ctx: ContextDep,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Deep-merge a partial spec into the stored one (``model.image``, lists and maps are replaced).

    ``{}`` changes nothing. With ``If-Match: "<generation>"`` the update applies only to that generation.
    """
    changes = patch.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def run(answers: Answers) -> Endpoint:
        with ctx.unit() as unit:
            unit.principal.require_namespace(namespace)
            return service.update(
                unit.session,
                namespace=namespace,
                name=name,
                patch=changes,
                if_match=if_match,
                catalogs=ctx.state.catalogs,
                box=ctx.state.box,
                hub=ctx.state.hub,
                answers=answers,
                ctx=unit.audit,
                now=unit.now,
            )

    return _after_write(ctx, with_hub(run, what=f"endpoint {namespace}/{name}"))


@router.delete("/endpoint/{namespace}/{name}", response_model=None, responses={**documented(Empty, "Deleted."), **ONE})
def delete_endpoint(namespace: str, name: str, ctx: ContextDep) -> dict[str, Any]:
    """Delete an endpoint. It disappears from the API at once; the controller removes its workloads."""
    with ctx.unit() as unit:
        unit.principal.require_namespace(namespace)
        service.delete(unit.session, namespace=namespace, name=name, ctx=unit.audit, now=unit.now)
    return {}


@router.post("/endpoint/{namespace}/{name}/pause", responses={**EWS, **ONE})
def pause_endpoint(namespace: str, name: str, ctx: ContextDep) -> Response:
    """Stop all replicas; no automatic wake-up. Paused endpoints do not count against quota."""
    with ctx.unit() as unit:
        unit.principal.require_namespace(namespace)
        endpoint = service.pause(unit.session, namespace=namespace, name=name, ctx=unit.audit, now=unit.now)
    return _after_write(ctx, endpoint)


@router.post("/endpoint/{namespace}/{name}/resume", responses={**EWS, **ONE})
def resume_endpoint(namespace: str, name: str, ctx: ContextDep) -> Response:
    """Resume a paused or scaled-to-zero endpoint. 400 "already running" when there is nothing to resume."""
    with ctx.unit() as unit:
        unit.principal.require_namespace(namespace)
        endpoint = service.resume(
            unit.session, namespace=namespace, name=name, catalogs=ctx.state.catalogs, ctx=unit.audit, now=unit.now
        )
    return _after_write(ctx, endpoint)


@router.post("/endpoint/{namespace}/{name}/scale-to-zero", responses={**EWS, **ONE})
def scale_endpoint_to_zero(namespace: str, name: str, ctx: ContextDep) -> Response:
    """Release all replicas now; the next request through the gateway wakes the endpoint."""
    with ctx.unit() as unit:
        unit.principal.require_namespace(namespace)
        endpoint = service.scale_to_zero(unit.session, namespace=namespace, name=name, ctx=unit.audit, now=unit.now)
    return _after_write(ctx, endpoint)


@router.get(
    "/endpoint/{namespace}/{name}/scaling",
    response_model=None,
    responses={
        **documented(ScalingView, "The policy in force, the desired count and the latest decisions."),
        **ONE,
    },
)
def endpoint_scaling(
    namespace: str,
    name: str,
    ctx: ContextDep,
    limit: Annotated[int | None, Query(ge=1, le=500, description="Decisions shown (default: a setting).")] = None,
) -> dict[str, Any]:
    """The autoscaling policy in force (the spec's numbers and the operator's), the desired replica count and
    the latest decisions with their reasons, newest first."""
    config = ctx.state.settings.autoscaler
    with ctx.unit(read_only=True) as unit:
        unit.principal.require_namespace(namespace)
        endpoint, desired, decisions = service.scaling(
            unit.session, namespace=namespace, name=name, limit=limit or config.decisions_kept
        )
        scaling = endpoint.spec["compute"]["scaling"]
        measure = {k: v for k, v in (scaling.get("measure") or {}).items() if v is not None}
        held = (
            "paused by the user"
            if endpoint.paused
            else "scaled to zero by the user: the next request wakes it"
            if endpoint.scaled_to_zero
            else None
        )
        return {
            "policy": {
                "minReplica": scaling["minReplica"],
                "maxReplica": scaling["maxReplica"],
                "scaleToZeroTimeout": scaling.get("scaleToZeroTimeout"),
                "measure": measure or {"hardwareUsage": config.hardware_usage},
                "tickSeconds": config.tick_seconds,
                "utilizationWindowSeconds": config.utilization_window_seconds,
                "upIntervalSeconds": config.up_interval_seconds,
                "downIntervalSeconds": config.down_interval_seconds,
                "stabilizationSeconds": config.stabilization_seconds,
                "tolerance": config.tolerance,
            },
            "paused": endpoint.paused,
            "scaledToZero": endpoint.scaled_to_zero,
            "desiredReplicas": 0 if held else desired.replicas if desired else None,
            "reason": held or (desired.reason if desired else "the autoscaler has not evaluated this endpoint yet"),
            "updatedAt": to_client_time(desired.updated_at) if desired else None,
            "decisions": [
                {
                    "time": to_client_time(d.at),
                    "previous": d.previous,
                    "raw": d.raw,
                    "stabilized": d.stabilized,
                    "final": d.final,
                    "reason": d.reason,
                    "inputs": d.inputs,
                }
                for d in decisions
            ],
        }


@router.get(
    "/endpoint/{namespace}/{name}/open-metrics",
    response_class=Response,
    responses={
        200: {
            "content": {openmetrics.CONTENT_TYPE: {"schema": {"type": "string"}}},
            "description": "OpenMetrics text.",
        },
        **ONE,
    },
)
def endpoint_open_metrics(namespace: str, name: str, ctx: ContextDep) -> Response:
    """The endpoint's traffic figures from the gateway, as OpenMetrics text: requests by status class, failures,
    upstream latency, prompt and completion tokens, pending and held requests, cold starts."""
    with ctx.unit(read_only=True) as unit:
        unit.principal.require_namespace(namespace)
        service.scaling(unit.session, namespace=namespace, name=name, limit=1)  # 404 for an unknown endpoint
    body = openmetrics.figures(ctx.state.settings.prometheus, f"{namespace}/{name}")
    return Response(body, media_type=openmetrics.CONTENT_TYPE)


@router.get(
    "/endpoint/{namespace}/{name}/logs",
    response_model=EndpointLogs,
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string"},
                    "example": 'data: {"time": "2026-11-23T12:00:00.000Z", "replica": "…", "stream": "stdout", '
                    '"line": "…"}\n\n',
                }
            },
            "description": "The replicas and their lines. With `follow=true`, server-sent events instead: one a line.",
        },
        **ONE,
    },
)
def endpoint_logs(
    namespace: str,
    name: str,
    ctx: ContextDep,
    replica: Annotated[str | None, Query(max_length=64, description="One replica's lines (gone ones too).")] = None,
    since: Annotated[datetime | None, Query(description="Lines from this time on (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Lines before this time (ISO 8601).")] = None,
    search: Annotated[str | None, Query(max_length=200, description="Only lines containing this text.")] = None,
    tail: Annotated[int, Query(ge=1, le=10_000, description="The last this many lines.")] = 1000,
    follow: Annotated[
        bool, Query(description="Server-sent events: the lines, then each new one as it comes, until you leave.")
    ] = False,
) -> EndpointLogs | StreamingResponse:
    """The endpoint's replicas, running or gone, with their start and stop times, and their log lines (time,
    replica, stream), oldest first; the endpoint's secret values are masked in every line. With ``follow``, a
    stream of server-sent events, one line each (``{"time", "replica", "stream", "line"}``)."""
    require_zones(since=since, until=until)
    state = ctx.state
    with ctx.unit(read_only=True) as unit:
        unit.principal.require_namespace(namespace)
        subject = service.log_subject(unit.session, namespace=namespace, name=name, box=state.box)
    found = service.logs(  # the pods and the log store, with no database connection held
        subject,
        home=state.settings.home,
        runtime=state.settings.runtime,
        kube=state.kube,
        kube_namespace=state.settings.controller.namespace,
        store=state.log_store,
        query=log_sources.Query(replica, since, until, search, tail, follow),
        clock=state.clock,
        retention=timedelta(days=state.settings.logs.retention_days),
    )
    if follow:
        return StreamingResponse(_following(found, search, state.draining), media_type="text/event-stream")
    return EndpointLogs(
        source=found.source,
        replicas=[
            ReplicaLog(
                id=r.id, started_at=r.started_at, stopped_at=r.stopped_at, restarts=r.restarts, exit_code=r.exit_code
            )
            for r in found.replicas
        ],
        lines=[LogLineOut(time=x.time, replica=x.replica, stream=x.stream, line=x.line) for x in found.lines],
    )


async def _following(found: log_sources.Logs, search: str | None, draining: threading.Event) -> AsyncIterator[bytes]:
    """The lines found, then the new ones as they are written, until the process drains (the client reconnects,
    to another replica). Between looks it holds no thread and no database connection."""

    def event(line: LogLine) -> bytes:
        body = {"time": to_client_time(line.time), "replica": line.replica, "stream": line.stream, "line": line.line}
        return b"data: " + orjson.dumps(body) + b"\n\n"

    for line in found.lines:
        yield event(line)
    follower = found.follower
    if follower is None:
        return
    sent = set(found.lines)  # a line written as the first ones were read may come again: once is enough
    quiet = 0.0
    while not draining.is_set():
        fresh = [
            masked
            for line in await anyio.to_thread.run_sync(follower.new_lines)
            if not search or search in line.line
            if (masked := found.masked(line)) not in sent
        ]
        sent.clear()
        if fresh:
            quiet = 0.0
            yield b"".join(event(line) for line in fresh)
        elif quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield b": keep-alive\n\n"
        await asyncio.sleep(follower.poll_seconds)
        quiet += follower.poll_seconds


@router.get(
    "/endpoint/{namespace}/{name}/events",
    response_model=None,
    responses={**documented(AuditPage, "A page of the endpoint's audit log, newest first."), **ONE},
)
def endpoint_events(
    namespace: str,
    name: str,
    ctx: ContextDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1, le=2**62, description="Cursor: the `next` of the previous page.")] = None,
) -> dict[str, Any]:
    """The audit log of one endpoint, newest first: actor, action, spec diff (secrets redacted), request id."""
    with ctx.unit(read_only=True) as unit:
        unit.principal.require_namespace(namespace)
        rows = service.events(unit.session, namespace=namespace, name=name, limit=limit, before=before)
        items = [event_item(e) for e in rows]
    return {"items": items, "next": rows[-1].id if len(rows) == limit else None}
