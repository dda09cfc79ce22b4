"""``/v2/usage/{namespace}``: what the namespace's endpoints held, and what it cost."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import ContextDep
from api.responses import FastJSONResponse
from api.schemas import documented, errors
from api.usage import service
from api.usage.schemas import UsageReport, UsageRow, UsageTotal
from api.validation import require_zones

router = APIRouter(prefix="/v2", tags=["usage"], default_response_class=FastJSONResponse)


@router.get(
    "/usage/{namespace}",
    response_model=UsageReport,
    responses={
        **documented(UsageReport, "Replica-hours and cost per endpoint, hardware row and day."),
        **errors(400, 403),
    },
)
def namespace_usage(
    namespace: str,
    ctx: ContextDep,
    start: Annotated[
        datetime | None, Query(alias="from", description="Start (ISO 8601 with a zone; default: 30 days ago).")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="End (ISO 8601 with a zone; default: now).")] = None,
) -> UsageReport:
    """Replica-hours and cost of the namespace's endpoints (deleted ones too) over a range, per endpoint,
    hardware row and UTC day, with totals; computed from the replica counts the controller observed."""
    require_zones(**{"from": start, "to": end})
    with ctx.unit(read_only=True) as unit:
        unit.principal.require_namespace(namespace)
        now = unit.now
        end = end or now
        start = start or end - timedelta(days=30)
        found = service.usage_in(unit.session, namespace=namespace, start=start, end=end, now=now)
    rows = [
        UsageRow(
            endpoint=u.name,
            endpoint_id=u.endpoint_id,
            hardware=u.hardware,
            day=u.day,
            replica_hours=u.replica_seconds / 3600,
            cost=u.cost,
        )
        for u in found
    ]
    return UsageReport(
        **{"from": start},
        to=min(end, now),
        replica_hours=sum(r.replica_hours for r in rows),
        cost=sum(r.cost for r in rows),
        items=rows,
        endpoints=_totals(rows, lambda r: r.endpoint),
        hardware=_totals(rows, lambda r: r.hardware),
        days=_totals(rows, lambda r: r.day.isoformat()),
    )


def _totals(rows: list[UsageRow], key: Callable[[UsageRow], str]) -> list[UsageTotal]:
    hours: dict[str, float] = defaultdict(float)
    cost: dict[str, float] = defaultdict(float)
    for row in rows:
        hours[key(row)] += row.replica_hours
        cost[key(row)] += row.cost
    return [UsageTotal(key=k, replica_hours=hours[k], cost=cost[k]) for k in sorted(hours)]
