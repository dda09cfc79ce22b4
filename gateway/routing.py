"""The routing table: every live endpoint's access rules and where its traffic goes, read from the database.

Reads are synchronous SQLAlchemy run in a worker thread (``load_routes``); the table itself lives on the
event loop and is only touched there (``RoutingTable.put`` / ``replace_all``). Changes arrive as endpoint ids
(NOTIFY on ``dais_endpoints`` for specs, ``dais_routes`` for status, or the in-process bus), with a periodic
full re-read as the safety net. When a route starts serving, everyone waiting on it is released at once:
that is how held cold-start requests are forwarded the moment a replica is Ready, without polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db.models import Endpoint, EndpointStatus
from core.domain.catalog import EngineCatalog
from core.domain.enums import EndpointType


@dataclass(frozen=True, slots=True)
class Route:
    endpoint_id: str
    namespace: str
    name: str
    access: EndpointType  # effective: protected is private
    private_service: bool
    paused: bool
    scaled_to_zero: bool
    state: str | None
    ready: int
    target: int
    upstreams: tuple[str, ...]  # base URLs (http://ip:port per Ready pod, or the Service)
    health_route: str
    startup_seconds: float | None
    message: str | None = None  # the status message: what the endpoint is doing (downloading the model: 45 % …)
    # Derived once here rather than on every request that reads them:
    serving: bool = field(init=False)  # a Ready replica with an address, and not paused
    label: str = field(init=False)  # "namespace/name", as metrics and messages name it

    def __post_init__(self) -> None:
        object.__setattr__(self, "serving", self.ready > 0 and bool(self.upstreams) and not self.paused)
        object.__setattr__(self, "label", f"{self.namespace}/{self.name}")


def route_of(endpoint: Endpoint, status: EndpointStatus | None, *, engines: EngineCatalog, use_pods: bool) -> Route:
    spec: dict[str, Any] = endpoint.spec
    addresses = (status.addresses or []) if status is not None else []
    if use_pods and addresses:
        upstreams = tuple(f"http://{address}" for address in addresses)
    elif status is not None and status.upstream:
        upstreams = (status.upstream,)
    else:
        upstreams = ()
    return Route(
        endpoint_id=endpoint.id,
        namespace=endpoint.namespace,
        name=endpoint.name,
        access=EndpointType(spec.get("type") or EndpointType.PRIVATE).effective,
        private_service=bool(spec.get("privateService")),
        paused=endpoint.paused,
        scaled_to_zero=endpoint.scaled_to_zero,
        state=status.state if status is not None else None,
        ready=status.ready_replica if status is not None else 0,
        target=status.target_replica if status is not None else 0,
        upstreams=upstreams,
        health_route=engines.health_route(spec),
        startup_seconds=status.startup_seconds if status is not None else None,
        message=status.message if status is not None else None,
    )


def load_routes(
    sessions: sessionmaker[Session], *, engines: EngineCatalog, use_pods: bool, ids: Iterable[str] | None = None
) -> tuple[list[Route], list[str]]:
    """Live endpoints' routes (all of them, or those of ``ids``) and which of ``ids`` are gone."""
    stmt = (
        select(Endpoint, EndpointStatus)
        .outerjoin(EndpointStatus, EndpointStatus.endpoint_id == Endpoint.id)
        .where(Endpoint.deleted_at.is_(None))
    )
    wanted = set(ids) if ids is not None else None
    if wanted is not None:
        stmt = stmt.where(Endpoint.id.in_(wanted))
    with sessions() as session:
        routes = [route_of(e, s, engines=engines, use_pods=use_pods) for e, s in session.execute(stmt).all()]
    gone = sorted(wanted - {r.endpoint_id for r in routes}) if wanted is not None else []
    return routes, gone


class RoutingTable:
    """``(namespace, name) → Route``, owned by the event loop."""

    def __init__(self) -> None:
        self._by_name: dict[tuple[str, str], Route] = {}
        self._by_id: dict[str, Route] = {}
        self._serving: dict[str, asyncio.Event] = {}
        self.loaded = False  # read whole once: until then an unknown endpoint may only be not read yet

    def get(self, namespace: str, name: str) -> Route | None:
        return self._by_name.get((namespace, name))

    def by_id(self, endpoint_id: str) -> Route | None:
        return self._by_id.get(endpoint_id)

    def routes(self) -> list[Route]:
        return list(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def put(self, route: Route) -> None:
        old = self._by_id.get(route.endpoint_id)
        if old is not None and (old.namespace, old.name) != (route.namespace, route.name):
            self._by_name.pop((old.namespace, old.name), None)
        self._by_id[route.endpoint_id] = route
        self._by_name[(route.namespace, route.name)] = route
        if route.serving or route.paused:  # held requests go on, or learn they never will
            event = self._serving.pop(route.endpoint_id, None)
            if event is not None:
                event.set()

    def remove(self, endpoint_id: str) -> None:
        old = self._by_id.pop(endpoint_id, None)
        if old is not None and self._by_name.get((old.namespace, old.name)) is old:
            del self._by_name[(old.namespace, old.name)]
        event = self._serving.pop(endpoint_id, None)
        if event is not None:
            event.set()  # waiters re-check and find the endpoint gone

    def replace_all(self, routes: Iterable[Route]) -> None:
        fresh = {r.endpoint_id: r for r in routes}
        for endpoint_id in [i for i in self._by_id if i not in fresh]:
            self.remove(endpoint_id)
        for route in fresh.values():
            self.put(route)
        self.loaded = True

    def changed(self, endpoint_id: str) -> asyncio.Event:
        """An event set the next time this endpoint starts serving (or is paused, or goes away)."""
        event = self._serving.get(endpoint_id)
        if event is None:
            event = self._serving[endpoint_id] = asyncio.Event()
        return event
