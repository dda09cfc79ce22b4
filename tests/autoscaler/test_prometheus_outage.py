"""Prometheus away, refusing or hanging, on a live API and a real PostgreSQL: the tick holds no database connection
while it waits, nothing scales down on the missing data, each decision says why, and the gateway's pending
requests still scale up."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.pool import QueuePool

from autoscaler.app import policy_config
from autoscaler.policy import Decision
from autoscaler.sources import HardwareUse, Signals
from autoscaler.tick import Ticker
from core.db.models import Endpoint, EndpointActivity, EndpointScaling, EndpointStatus
from core.db.session import make_sessionmaker
from core.prometheus import PrometheusClient
from core.settings import AutoscalerSettings
from tests.conftest import LiveServer
from tests.factories import ADMIN_TOKEN, endpoint_body
from tests.fixtures.postgres import free_port
from tests.fixtures.prometheus import SilentServer

APPLICATION = "dais-autoscaler-under-test"
SETTINGS = AutoscalerSettings(utilization_window_seconds=5)


@pytest.fixture
def autoscaler_engine(live_server: LiveServer) -> Iterator[Engine]:
    """The ticker's own engine, its sessions named in pg_stat_activity."""
    url = live_server.settings.effective_database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url, connect_args={"application_name": APPLICATION})
    yield engine
    engine.dispose()


def endpoint(server: LiveServer, name: str, *, ready: int, pending_mean: float = 0.0) -> str:
    """A CPU endpoint running ``ready`` replicas, with the gateway's figures for it as of now."""
    body = endpoint_body(name)
    body["compute"].update(accelerator="cpu", instanceType="intel-spr", instanceSize="x2")
    body["compute"]["scaling"] = {"minReplica": 1, "maxReplica": 6}
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        created = client.post("/v2/endpoint/admin", json=body)
    assert created.status_code == 200, created.text
    now = datetime.now(UTC)
    with server.sessions.begin() as session:
        ident = session.scalars(select(Endpoint.id).where(Endpoint.name == name)).one()
        session.add(
            EndpointStatus(
                endpoint_id=ident,
                state="running",
                ready_replica=ready,
                target_replica=ready,
                conditions=[],
                updated_at=now,
            )
        )
        session.add(EndpointScaling(endpoint_id=ident, replicas=ready, state={}, reason="", updated_at=now))
        session.add(
            EndpointActivity(
                endpoint_id=ident,
                gateway="gw",
                last_request_at=now,
                in_flight=round(pending_mean),
                pending_mean=pending_mean,
                updated_at=now,
            )
        )
    return ident


def ticker(engine: Engine, prometheus: PrometheusClient) -> Ticker:
    source = Signals(HardwareUse(prometheus, SETTINGS, "dais-endpoints", pods=lambda: {}))
    return Ticker(
        sessions=make_sessionmaker(engine),
        source=source,
        config=policy_config(SETTINGS),
        clock=lambda: datetime.now(UTC),
    )


def in_transaction(engine: Engine) -> list[str]:
    """The autoscaler's sessions that sit inside a transaction."""
    with engine.connect() as connection:
        return list(
            connection.scalars(
                text(
                    "SELECT state FROM pg_stat_activity WHERE application_name = :name "
                    "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
                ),
                {"name": APPLICATION},
            )
        )


def shown_reason(server: LiveServer, name: str) -> str:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        reason: str = client.get(f"/v2/endpoint/admin/{name}/scaling").json()["reason"]
    return reason


def test_a_hung_prometheus_holds_no_database_connection(live_server: LiveServer, autoscaler_engine: Engine) -> None:
    steady = endpoint(live_server, "hung-steady", ready=3)
    queued = endpoint(live_server, "hung-queued", ready=2, pending_mean=9.0)  # 4.5 per replica, threshold 1.5
    asleep = endpoint(live_server, "hung-asleep", ready=0)
    pool = autoscaler_engine.pool
    assert isinstance(pool, QueuePool)
    with SilentServer() as silent, ThreadPoolExecutor(2) as background:
        prometheus = PrometheusClient(silent.url, timeout=60)
        scaler = ticker(autoscaler_engine, prometheus)
        tick = background.submit(scaler.tick)
        try:
            assert silent.wait_requests(), "the tick never queried Prometheus"
            assert pool.checkedout() == 0, "the tick holds a pool connection while Prometheus hangs"
            assert in_transaction(autoscaler_engine) == []
            # A request's wake does not wait for the hung tick.
            woken = background.submit(scaler.wake, asleep).result(timeout=30)
            assert woken is not None
            assert woken.replicas == 1
            assert not tick.done()
        finally:
            silent.hang_up()
        made: dict[str, Decision] = dict(tick.result(timeout=30))
    why = "Prometheus unreachable: Server disconnected without sending a response."
    assert made[steady].replicas == 3
    assert made[steady].reason == f"holding at 3: no hardware use % data ({why}); missing metrics never scale down"
    assert made[queued].replicas == 6  # ceil(2 × 4.5 / 1.5)
    assert shown_reason(live_server, "hung-steady") == made[steady].reason
    assert shown_reason(live_server, "hung-queued").startswith(f"no hardware use % data ({why}); pending requests")


def test_a_refused_prometheus_is_missing_data_that_says_why(live_server: LiveServer, autoscaler_engine: Engine) -> None:
    steady = endpoint(live_server, "refused-steady", ready=3)
    queued = endpoint(live_server, "refused-queued", ready=1, pending_mean=3.0)
    refused = PrometheusClient(f"http://127.0.0.1:{free_port()}", timeout=5)  # nothing listens there
    scaler = ticker(autoscaler_engine, refused)

    made = dict(scaler.tick())
    written = updated_at(autoscaler_engine, steady)
    again = dict(scaler.tick())

    assert made[steady].replicas == again[steady].replicas == 3
    assert "(Prometheus unreachable: [Errno 111] Connection refused)" in made[steady].reason
    assert made[queued].replicas == 2  # ceil(1 × 3 / 1.5)
    assert again[queued].replicas == 2  # the next scale-up waits for its interval
    assert shown_reason(live_server, "refused-steady") == made[steady].reason
    assert updated_at(autoscaler_engine, steady) == written, "the same outage reads the same: written once"


def updated_at(engine: Engine, endpoint_id: str) -> datetime:
    with make_sessionmaker(engine)() as session:
        return session.scalars(
            select(EndpointScaling.updated_at).where(EndpointScaling.endpoint_id == endpoint_id)
        ).one()
