"""The endpoint object as the client reads it ("EndpointWithStatus", reference §3)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

import orjson
from sqlalchemy import Row

from core.db.models import Endpoint, EndpointStatus
from core.domain.catalog import EngineCatalog
from core.domain.state import Observed, shown_state
from core.domain.timefmt import to_client_time


def observed_of(status: EndpointStatus | Any | None) -> Observed | None:
    """The controller's status, from an ``EndpointStatus`` or a read row carrying its columns; None
    before the controller has reported."""
    if status is None or status.state is None:
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
    return engines.health_route(spec)


class EndpointLike(Protocol):
    """What rendering reads besides the spec: an ``Endpoint`` entity, or a read row."""

    generation: int
    paused: bool
    scaled_to_zero: bool
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str


def render(endpoint: Endpoint, observed: Observed | None, *, engines: EngineCatalog) -> bytes:
    """An endpoint entity as the JSON object the client reads."""
    spec = endpoint.spec
    return render_json(
        endpoint,
        orjson.dumps(spec),
        observed,
        min_replica=spec["compute"]["scaling"]["minReplica"],
        health_route=health_route(spec, engines),
        requested_revision=spec["model"].get("revision"),
        resolved_revision=(endpoint.resolution or {}).get("sha"),
    )


def render_row(row: Row[Any], *, engines: EngineCatalog) -> bytes:
    """A read row (see ``repository.get_live``) as JSON. The stored spec is spliced in as the database
    returned it, never decoded and re-encoded: LIST renders 100 of them per request.

    The rendering is a pure function of the row, so it is memoised on the row's whole content: an
    endpoint whose spec and status have not changed since the last read costs one dictionary lookup.
    """
    # Keyed on a plain tuple of atoms (str, int, datetime): the collector untracks such tuples, so a
    # full cache adds nothing to garbage-collection pauses (keying on Row objects added 200 ms ones).
    return _render_values(tuple(row), row._fields, engines)


@lru_cache(maxsize=20_000)
def _render_values(values: tuple[Any, ...], fields: tuple[str, ...], engines: EngineCatalog) -> bytes:
    row: Any = _Fields(zip(fields, values, strict=True))
    spec_json = row.spec_json.encode() if isinstance(row.spec_json, str) else bytes(row.spec_json)
    min_replica, route, requested = _spec_facts(spec_json, engines)
    return render_json(
        row,
        spec_json,
        observed_of(row),
        min_replica=min_replica,
        health_route=route,
        requested_revision=requested,
        resolved_revision=row.resolved_sha,
    )


@dataclass(frozen=True, slots=True)
class Facts:
    """What the list's filters read of a row."""

    name: str
    state: str
    tags: frozenset[str]
    repository: str


def row_facts(row: Row[Any]) -> Facts:
    return _facts(tuple(row), row._fields)


@lru_cache(maxsize=20_000)
def _facts(values: tuple[Any, ...], fields: tuple[str, ...]) -> Facts:
    row: Any = _Fields(zip(fields, values, strict=True))
    spec = orjson.loads(row.spec_json)
    shown = shown_state(
        paused=row.paused,
        scaled_to_zero=row.scaled_to_zero,
        generation=row.generation,
        min_replica=spec["compute"]["scaling"]["minReplica"],
        observed=observed_of(row),
    )
    return Facts(spec["name"], shown.state.value, frozenset(spec.get("tags") or ()), spec["model"]["repository"])


@lru_cache(maxsize=20_000)
def _spec_facts(spec_json: bytes, engines: EngineCatalog) -> tuple[int, str, str | None]:
    spec = orjson.loads(spec_json)
    return spec["compute"]["scaling"]["minReplica"], health_route(spec, engines), spec["model"].get("revision")


def render_json(
    endpoint: EndpointLike,
    spec_json: bytes,
    observed: Observed | None,
    *,
    min_replica: int,
    health_route: str,
    requested_revision: str | None,
    resolved_revision: str | None,
) -> bytes:
    """``spec_json`` is the stored spec, which holds no secret values (``EndpointSpec.to_stored``)."""
    shown = shown_state(
        paused=endpoint.paused,
        scaled_to_zero=endpoint.scaled_to_zero,
        generation=endpoint.generation,
        min_replica=min_replica,
        observed=observed,
    )
    status: dict[str, Any] = {
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
        # What the spec asked for (a branch, tag or sha; null: the default branch) and the commit it was pinned to.
        "requestedRevision": requested_revision,
        "resolvedRevision": resolved_revision,
    }
    if shown.url:
        status["url"] = shown.url
    # The latest request through the gateway (null: none yet); only reads carry it, not a write's answer.
    last_activity = getattr(endpoint, "last_activity", None)
    status["lastActivity"] = to_client_time(last_activity) if last_activity else None
    extra = orjson.dumps({"accountId": None, "healthRoute": health_route, "status": status})
    return spec_json.rstrip()[:-1] + b"," + extra[1:]  # {spec…} + {extra…} → {spec…, extra…}


class _Fields(dict[str, Any]):
    """Attribute access over a read row's values, for ``render_json`` and ``observed_of``."""

    def __getattr__(self, name: str) -> Any:
        return self[name]
