"""A running gateway (its own event loop in a thread) on the live API's database, fake engines behind it, and
helpers that play the controller's part: writing an endpoint's status with its upstream addresses."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db.models import Endpoint, EndpointStatus
from core.domain.catalog import load_engine_catalog
from core.settings import GatewaySettings
from gateway.app import Gateway
from tests.conftest import LiveServer
from tests.factories import ADMIN_TOKEN, endpoint_body
from tests.fixtures import scrape
from tests.fixtures.engine import FakeEngine
from tests.fixtures.kube import wait_for


class Running:
    def __init__(self, gateway: Gateway, live: LiveServer) -> None:
        self.gateway = gateway
        self.live = live
        self.url = f"http://127.0.0.1:{gateway.ports['public']}"
        self.internal_url = f"http://127.0.0.1:{gateway.ports['internal']}"
        self.api = httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)

    def create(self, name: str, *, namespace: str = "admin", **overrides: Any) -> str:
        """Creates an endpoint through the API; returns its id."""
        overrides.setdefault("type", "public")
        answer = self.api.post(f"/v2/endpoint/{namespace}", json=endpoint_body(name, **overrides))
        assert answer.status_code == 200, answer.text
        with self.live.sessions() as session:
            return str(
                session.scalar(
                    select(Endpoint.id).where(
                        Endpoint.namespace == namespace, Endpoint.name == name, Endpoint.deleted_at.is_(None)
                    )
                )
            )

    def set_status(
        self, endpoint_id: str, *, engines: list[FakeEngine], ready: int | None = None, target: int = 1, **extra: Any
    ) -> None:
        write_status(self.live.sessions, endpoint_id, engines=engines, ready=ready, target=target, **extra)

    def serve(self, name: str, engine: FakeEngine, **overrides: Any) -> str:
        """A public endpoint admin/{name} served by ``engine``, once the gateway routes it; returns its URL."""
        self.set_status(self.create(name, **overrides), engines=[engine])
        self.serving("admin", name)
        return f"{self.url}/admin/{name}"

    def figure(self, metric: str, endpoint: str) -> float:
        """A metric's value for one endpoint ("ns/name") from the internal /metrics, summed over other labels."""
        text = httpx.get(f"{self.internal_url}/metrics").text
        return scrape.value(text, metric, endpoint=endpoint) or 0.0

    def serving(self, namespace: str, name: str, expected: bool = True) -> None:
        """Waits until the gateway's table shows the endpoint (not) serving."""

        def check() -> bool | None:
            route = self.gateway.table.get(namespace, name)
            return True if route is not None and route.serving == expected else None

        wait_for(check, timeout=10, what=f"{namespace}/{name} serving={expected} in the gateway")

    def known(self, namespace: str, name: str, condition: Callable[[Any], bool] = lambda r: True) -> None:
        wait_for(
            lambda: True if (r := self.gateway.table.get(namespace, name)) is not None and condition(r) else None,
            timeout=10,
            what=f"{namespace}/{name} in the gateway's table",
        )


def write_status(
    sessions: sessionmaker[Session],
    endpoint_id: str,
    *,
    engines: list[FakeEngine],
    ready: int | None = None,
    target: int = 1,
    **extra: Any,
) -> None:
    """What the controller writes once replicas run (or stop): state, counts and where they listen."""
    ready = len(engines) if ready is None else ready
    fields: dict[str, Any] = {
        "state": "running" if ready else ("scaledToZero" if target == 0 else "initializing"),
        "message": "test",
        "ready_replica": ready,
        "target_replica": target,
        "url": None,
        "observed_generation": 1,
        "conditions": [],
        "upstream": engines[0].url if engines else None,
        "addresses": [e.address for e in engines[:ready]],
        "updated_at": datetime.now(UTC),
        **extra,
    }
    with sessions.begin() as session:
        status = session.get(EndpointStatus, endpoint_id)
        if status is None:
            session.add(EndpointStatus(endpoint_id=endpoint_id, **fields))
        else:
            for key, value in fields.items():
                setattr(status, key, value)


def start_gateway(live: LiveServer, **overrides: Any) -> tuple[Gateway, threading.Thread]:
    defaults: dict[str, Any] = {"listen": "127.0.0.1:0", "internal_listen": "127.0.0.1:0", "activity_seconds": 1}
    settings = GatewaySettings(**{**defaults, **overrides})
    gateway = Gateway(
        settings,
        sessions=live.sessions,
        engines=load_engine_catalog(None),
        database_url=live.settings.effective_database_url,
        name=f"test-{uuid.uuid4().hex[:6]}",
    )
    thread = threading.Thread(target=lambda: asyncio.run(gateway.serve()), name="gateway", daemon=True)
    thread.start()
    if not gateway.ready.wait(20):
        raise RuntimeError("the gateway did not start")
    return gateway, thread


@pytest.fixture(scope="module")
def gateway(live_server: LiveServer) -> Iterator[Running]:
    gw, thread = start_gateway(live_server)
    yield Running(gw, live_server)
    gw.stop()
    thread.join(timeout=15)


@pytest.fixture(scope="module")
def engine() -> Iterator[FakeEngine]:
    with FakeEngine() as fake:
        yield fake
