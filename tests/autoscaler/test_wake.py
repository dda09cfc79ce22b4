"""The wake fast path, its tick fallback, and the scaling view (GET /v2/endpoint/{ns}/{name}/scaling)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from autoscaler.app import Autoscaler
from autoscaler.policy import PolicyConfig
from autoscaler.sources import Signals
from autoscaler.tick import WAKE_REASON, Ticker
from core.db.changes import request_wake
from core.db.models import Endpoint, EndpointActivity, EndpointScaling
from tests.conftest import Clock, LiveServer
from tests.factories import ADMIN_TOKEN, endpoint_body
from tests.fixtures.kube import wait_for

IDLE = {"minReplica": 0, "maxReplica": 2, "scaleToZeroTimeout": 15}


def create(client: TestClient, name: str, scaling: dict[str, Any] = IDLE) -> None:
    body = endpoint_body(name)
    body["compute"]["scaling"] = scaling
    response = client.post("/v2/endpoint/admin", json=body)
    assert response.status_code == 200, response.text


def endpoint_id(db: sessionmaker[Session], name: str) -> str:
    with db() as session:
        return session.scalars(select(Endpoint.id).where(Endpoint.name == name)).one()


def ticker(db: sessionmaker[Session], clock: Clock) -> Ticker:
    return Ticker(sessions=db, source=Signals(hardware=None), config=PolicyConfig(), clock=clock)


def test_a_tick_wakes_an_endpoint_the_user_scaled_to_zero_once_a_request_is_in_flight(
    client: TestClient, db: sessionmaker[Session], clock: Clock
) -> None:
    create(client, "sleepy")
    assert client.post("/v2/endpoint/admin/sleepy/scale-to-zero").status_code == 200
    ident = endpoint_id(db, "sleepy")
    assert ticker(db, clock).tick() == []  # asleep and nobody asking: nothing written
    asleep = client.get("/v2/endpoint/admin/sleepy/scaling").json()
    assert (asleep["desiredReplicas"], asleep["reason"]) == (0, "scaled to zero by the user: the next request wakes it")

    with db() as session, session.begin():  # what the gateway writes while it holds a request
        now = clock()
        session.add(
            EndpointActivity(
                endpoint_id=ident, gateway="test", last_request_at=now, in_flight=1, pending_mean=1, updated_at=now
            )
        )
    ((woken, decision),) = ticker(db, clock).tick()

    assert (woken, decision.replicas, decision.reason) == (ident, 1, WAKE_REASON)
    view = client.get("/v2/endpoint/admin/sleepy/scaling").json()
    assert view["scaledToZero"] is False
    assert view["desiredReplicas"] == 1
    assert [(d["previous"], d["final"], d["reason"]) for d in view["decisions"]] == [(0, 1, WAKE_REASON)]
    events = client.get("/v2/endpoint/admin/sleepy/events").json()["items"]
    assert (events[0]["actor"], events[0]["action"]) == ("autoscaler", "wake")


def test_a_wake_for_a_paused_or_running_endpoint_changes_nothing(
    client: TestClient, db: sessionmaker[Session], clock: Clock
) -> None:
    create(client, "paused-one")
    assert client.post("/v2/endpoint/admin/paused-one/pause").status_code == 200
    create(client, "running-one", {"minReplica": 1, "maxReplica": 2})
    scaler = ticker(db, clock)
    scaler.tick()

    assert scaler.wake(endpoint_id(db, "paused-one")) is None  # pause wins
    assert scaler.wake(endpoint_id(db, "running-one")) is None
    assert scaler.wake("0" * 32) is None
    with db() as session:
        assert session.get(EndpointScaling, endpoint_id(db, "running-one")).replicas == 1  # type: ignore[union-attr]


def test_an_idle_endpoint_goes_to_zero_and_a_wake_brings_it_back(
    client: TestClient, db: sessionmaker[Session], clock: Clock
) -> None:
    create(client, "idle")
    scaler = ticker(db, clock)
    scaler.tick()
    clock.now += timedelta(minutes=15)
    ((_, asleep),) = scaler.tick()
    assert asleep.replicas == 0

    woken = scaler.wake(endpoint_id(db, "idle"))

    assert woken is not None
    assert woken.replicas == 1
    view = client.get("/v2/endpoint/admin/idle/scaling").json()
    assert [d["final"] for d in view["decisions"]] == [1, 0, 1]  # newest first
    assert view["decisions"][1]["reason"].startswith("scaled to zero: no request for 15.0 min")


def test_the_scaling_view_shows_the_policy_in_force(client: TestClient) -> None:
    body = endpoint_body("measured")
    body["compute"]["scaling"] = {"minReplica": 1, "maxReplica": 3, "measure": {"pendingRequests": 4}}
    assert client.post("/v2/endpoint/admin", json=body).status_code == 200

    view = client.get("/v2/endpoint/admin/measured/scaling").json()

    assert view["policy"]["measure"] == {"pendingRequests": 4}
    assert view["policy"]["stabilizationSeconds"] == 300
    assert view["desiredReplicas"] is None
    assert view["reason"] == "the autoscaler has not evaluated this endpoint yet"
    missing = client.get("/v2/endpoint/admin/nothing-here/scaling")
    assert missing.status_code == 404
    assert "nothing-here" in missing.json()["error"]


def test_the_scaling_view_is_only_for_the_namespace(client: TestClient, alice: str) -> None:
    create(client, "private-view")
    response = client.get("/v2/endpoint/admin/private-view/scaling", headers={"Authorization": f"Bearer {alice}"})
    assert response.status_code in (403, 404)


# -- the process: a NOTIFY from another connection reaches the running autoscaler ---------------------------


@pytest.fixture
def autoscaler(live_server: LiveServer) -> Iterator[Autoscaler]:
    scaler = Autoscaler(live_server.settings, sessions=live_server.sessions)
    stop = threading.Event()
    thread = threading.Thread(target=scaler.run, args=(stop,), daemon=True)
    thread.start()
    wait_for(scaler.leading.is_set, timeout=10, what="the autoscaler to start")
    yield scaler
    stop.set()
    thread.join(timeout=15)


def test_a_wake_signal_stores_a_replica_at_once(live_server: LiveServer, autoscaler: Autoscaler) -> None:
    api = httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    body = endpoint_body("wake-me")
    body["compute"]["scaling"] = IDLE
    assert api.post("/v2/endpoint/admin", json=body).status_code == 200
    assert api.post("/v2/endpoint/admin/wake-me/scale-to-zero").status_code == 200
    ident = endpoint_id(live_server.sessions, "wake-me")

    sent = time.monotonic()
    request_wake(live_server.sessions, ident)  # as the gateway does, from its own connection

    # (A tick may have stored a count before the scale-to-zero: the wake is what clears the flag.)
    view = wait_for(
        lambda: (v := api.get("/v2/endpoint/admin/wake-me/scaling").json())["scaledToZero"] is False and v,
        timeout=10,
        what="the wake to store a replica",
        interval=0.01,
    )
    print(f"wake signal to stored count: {(time.monotonic() - sent) * 1000:.0f} ms")
    assert view["desiredReplicas"] == 1
    assert view["decisions"][0]["reason"] == WAKE_REASON
    at = datetime.fromisoformat(view["decisions"][0]["time"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - at).total_seconds()) < 60
