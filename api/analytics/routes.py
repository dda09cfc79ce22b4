"""``/v2/endpoint/{namespace}/{name}/metrics``: an endpoint's metric history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.analytics import service
from api.analytics.schemas import MetricHistory
from api.deps import ContextDep
from api.responses import FastJSONResponse
from api.schemas import documented, errors
from api.validation import require_zones

router = APIRouter(prefix="/v2", tags=["metrics"], default_response_class=FastJSONResponse)


@router.get(
    "/endpoint/{namespace}/{name}/metrics",
    response_model=None,
    responses={
        **documented(MetricHistory, "The endpoint's series as arrays aligned on the timestamps."),
        **errors(400, 403, 404),
    },
)
def endpoint_metrics(
    namespace: str,
    name: str,
    ctx: ContextDep,
    start: Annotated[
        datetime | None, Query(alias="from", description="Start (ISO 8601 with a zone; default: an hour before to).")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="End (ISO 8601 with a zone; default: now).")] = None,
    step: Annotated[
        str | None,
        Query(
            max_length=16,
            description="Seconds between points, or a duration (60, 30s, 5m, 1h, 1d); default: about 300 points. "
            f"At most {service.MAX_POINTS} points.",
        ),
    ] = None,
    series: Annotated[
        str | None,
        Query(max_length=1000, description=f"Comma-separated; default: all of {', '.join(service.SERIES)}."),
    ] = None,
    source: Annotated[
        service.Source | None,
        Query(description="prometheus or embedded; default: Prometheus when one is configured."),
    ] = None,
) -> FastJSONResponse:
    """Requests by status class, latency percentiles, pending and held requests, replicas, hardware use and
    tokens of one endpoint over a range, as arrays aligned on the timestamps: each figure covers the step that
    ends at its timestamp, null where there is no data. From Prometheus when one is configured, else from the
    store the gateway and the controller write every 10 s (kept 7 days; at 5-minute steps after a day)."""
    require_zones(**{"from": start, "to": end})
    settings = ctx.state.settings
    with ctx.unit(read_only=True) as unit:
        unit.principal.require_namespace(namespace)
        query = service.plan(
            start=start,
            end=end,
            step=step,
            series=series,
            source=source,
            prometheus=settings.prometheus.url is not None,
            now=unit.now,
        )
        found = service.endpoint(unit.session, namespace=namespace, name=name)
        if query.source is service.Source.EMBEDDED:
            figures = service.embedded(
                unit.session, endpoint=found, window=query.window, series=query.series, now=unit.now
            )
    if query.source is service.Source.PROMETHEUS:
        figures = service.from_prometheus(settings, endpoint=found, window=query.window, series=query.series)
    # Rendered here, not by FastAPI's encoder, which walks every value of the arrays in Python.
    return FastJSONResponse(service.render(query, figures))
