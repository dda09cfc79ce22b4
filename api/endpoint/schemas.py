"""The endpoint object as the client reads it ("EndpointWithStatus", reference §3)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from api.db.models import EndpointStatus
from api.domain.catalog import EngineCatalog
from api.domain.enums import ImageVariant
from api.domain.state import Observed, shown_state
from api.domain.timefmt import to_client_time


def observed_of(status: EndpointStatus | None) -> Observed | None:
    if status is None:
        return None
    return Observed(
        state=status.state,
        message=status.message,
        ready_replica=status.ready_replica,
        target_replica=status.target_replica,
        url=status.url,
        observed_generation=status.observed_generation,
    )


def health_route(spec: dict[str, Any], engines: EngineCatalog) -> str:
    ((variant, config),) = spec["model"]["image"].items()
    route = config.get("healthRoute")
    return str(route) if route else engines.defaults(ImageVariant(variant)).health_route


class EndpointLike(Protocol):
    """What rendering reads: an ``Endpoint`` entity, or a read row with the same columns."""

    spec: dict[str, Any]
    generation: int
    paused: bool
    scaled_to_zero: bool
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str


def render(endpoint: EndpointLike, observed: Observed | None, *, engines: EngineCatalog) -> dict[str, Any]:
    # Stored specs carry no secret values (EndpointSpec.to_stored); copy only what we add to.
    spec = endpoint.spec
    shown = shown_state(
        paused=endpoint.paused,
        scaled_to_zero=endpoint.scaled_to_zero,
        generation=endpoint.generation,
        min_replica=spec["compute"]["scaling"]["minReplica"],
        observed=observed,
    )
    body_status: dict[str, Any] = {
        "createdAt": to_client_time(endpoint.created_at),
        "createdBy": {"id": endpoint.created_by, "name": endpoint.created_by},
        "updatedAt": to_client_time(endpoint.updated_at),
        "updatedBy": {"id": endpoint.updated_by, "name": endpoint.updated_by},
        "private": None,
        "state": shown.state.value,
        "message": shown.message,
        "readyReplica": shown.ready_replica,
        "targetReplica": shown.target_replica,
        "generation": endpoint.generation,
        "observedGeneration": observed.observed_generation if observed else 0,
    }
    if shown.url:
        body_status["url"] = shown.url
    return {
        **spec,
        "accountId": None,
        "healthRoute": health_route(spec, engines),
        "status": body_status,
    }
