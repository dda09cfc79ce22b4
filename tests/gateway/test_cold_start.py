"""Cold starts: the wake signal, 503 with Retry-After, holding with X-Scale-Up-Timeout until a replica is Ready,
the hold cap, paused endpoints, and held requests counted as pending for the autoscaler."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import psycopg
import pytest
from sqlalchemy import select

from core.db.changes import WAKE_CHANNEL
from core.db.models import EndpointActivity
from tests.conftest import LiveServer
from tests.factories import endpoint_body
from tests.fixtures.engine import FakeEngine
from tests.fixtures.kube import wait_for
from tests.gateway.conftest import Running, start_gateway

IDLE = {"minReplica": 0, "maxReplica": 1, "scaleToZeroTimeout": 15}


class Wakes:
    """Listens on the autoscaler's wake channel, as the autoscaler does."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
        self.conn.execute(f"LISTEN {WAKE_CHANNEL}")

    def next(self, timeout: float = 10) -> str | None:
        for notice in self.conn.notifies(timeout=timeout, stop_after=1):
            return notice.payload
        return None

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def wakes(live_server: LiveServer) -> Iterator[Wakes]:
    listener = Wakes(live_server.settings.effective_database_url)
    yield listener
    listener.close()


def at_zero(gateway: Running, name: str, **status: object) -> str:
    ident = _create_idle(gateway, name)
    gateway.set_status(ident, engines=[], ready=0, target=0, **status)
    gateway.known("admin", name, lambda r: r.state == "scaledToZero")
    return ident


def _create_idle(gateway: Running, name: str) -> str:
    body = endpoint_body(name)
    body["compute"]["scaling"] = dict(IDLE)
    return gateway.create(name, compute=body["compute"])


def test_without_the_header_a_cold_request_gets_503_retry_after_and_wakes_it(gateway: Running, wakes: Wakes) -> None:
    ident = at_zero(gateway, "cold-plain", startup_seconds=42.4)
    answer = httpx.post(f"{gateway.url}/admin/cold-plain/generate", json={"inputs": "x"})
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "42"
    assert answer.json()["statusCode"] == 503
    assert "X-Scale-Up-Timeout" in answer.json()["error"]
    assert wakes.next() == ident


def test_a_held_request_is_forwarded_once_a_replica_is_ready(
    gateway: Running, wakes: Wakes, engine: FakeEngine
) -> None:
    ident = at_zero(gateway, "cold-held")
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(
            httpx.post,
            f"{gateway.url}/admin/cold-held/generate",
            json={"inputs": "hello", "parameters": {"max_new_tokens": 2}},
            headers={"X-Scale-Up-Timeout": "60"},
            timeout=90,
        )
        assert wakes.next() == ident
        wait_for(
            lambda: gateway.figure("dais_gateway_held", "admin/cold-held") == 1, timeout=10, what="the request held"
        )
        # Held requests count as pending for the autoscaler.
        wait_for(lambda: _in_flight(gateway, ident) == 1, timeout=10, what="the held request in endpoint_activity")
        assert not held.done()
        gateway.set_status(ident, engines=[engine])  # the controller saw a Ready replica
        answer = held.result(timeout=30)
    assert answer.status_code == 200
    assert answer.json()["generated_text"]
    wait_for(lambda: _in_flight(gateway, ident) == 0, timeout=10, what="the request no longer pending")


def _in_flight(gateway: Running, ident: str) -> int | None:
    with gateway.live.sessions() as session:
        row = session.scalar(select(EndpointActivity).where(EndpointActivity.endpoint_id == ident))
        return row.in_flight if row is not None else None


def test_a_held_request_gives_up_after_its_timeout(gateway: Running) -> None:
    at_zero(gateway, "cold-timeout")
    answer = httpx.get(f"{gateway.url}/admin/cold-timeout/info", headers={"X-Scale-Up-Timeout": "0.5"})
    assert answer.status_code == 503
    assert "within X-Scale-Up-Timeout" in answer.json()["error"]
    assert "Retry-After" in answer.headers


def test_a_bad_scale_up_timeout_is_a_400(gateway: Running) -> None:
    at_zero(gateway, "cold-bad")
    answer = httpx.get(f"{gateway.url}/admin/cold-bad/info", headers={"X-Scale-Up-Timeout": "soon"})
    assert answer.status_code == 400
    assert "X-Scale-Up-Timeout" in answer.json()["error"]


def test_the_hold_queue_is_bounded(live_server: LiveServer, engine: FakeEngine) -> None:
    small, thread = start_gateway(live_server, hold_queue_size=2)
    running = Running(small, live_server)
    try:
        ident = at_zero(running, "cold-cap")
        with ThreadPoolExecutor(2) as pool:
            held: list[Future[httpx.Response]] = [
                pool.submit(
                    httpx.get,
                    f"{running.url}/admin/cold-cap/info",
                    headers={"X-Scale-Up-Timeout": "60"},
                    timeout=90,
                )
                for _ in range(2)
            ]
            wait_for(lambda: running.figure("dais_gateway_held", "admin/cold-cap") == 2, timeout=10, what="two held")
            third = httpx.get(f"{running.url}/admin/cold-cap/info", headers={"X-Scale-Up-Timeout": "60"})
            assert third.status_code == 503
            assert "too many requests are already waiting" in third.json()["error"]
            running.set_status(ident, engines=[engine])
            assert [f.result(timeout=30).status_code for f in held] == [200, 200]
    finally:
        small.stop()
        thread.join(timeout=15)


def test_a_paused_endpoint_answers_503_and_is_not_woken(gateway: Running) -> None:
    _create_idle(gateway, "cold-paused")
    assert gateway.api.post("/v2/endpoint/admin/cold-paused/pause").status_code == 200
    gateway.known("admin", "cold-paused", lambda r: r.paused)
    before = gateway.figure("dais_gateway_cold_starts_total", "admin/cold-paused")
    answer = httpx.get(f"{gateway.url}/admin/cold-paused/info", headers={"X-Scale-Up-Timeout": "30"})
    assert answer.status_code == 503
    assert "paused" in answer.json()["error"]
    assert gateway.figure("dais_gateway_cold_starts_total", "admin/cold-paused") == before


def test_pausing_releases_held_requests(gateway: Running) -> None:
    ident = _create_idle(gateway, "cold-pause-held")
    gateway.set_status(ident, engines=[], ready=0, target=0)
    gateway.known("admin", "cold-pause-held", lambda r: r.state == "scaledToZero")
    done = threading.Event()
    result: list[httpx.Response] = []

    def call() -> None:
        result.append(
            httpx.get(f"{gateway.url}/admin/cold-pause-held/info", headers={"X-Scale-Up-Timeout": "60"}, timeout=90)
        )
        done.set()

    threading.Thread(target=call, daemon=True).start()
    wait_for(lambda: gateway.figure("dais_gateway_held", "admin/cold-pause-held") == 1, timeout=10, what="held")
    assert gateway.api.post("/v2/endpoint/admin/cold-pause-held/pause").status_code == 200
    assert done.wait(10)
    assert result[0].status_code == 503
    assert "paused" in result[0].json()["error"]


def test_a_request_to_an_endpoint_still_starting_says_what_it_is_doing(gateway: Running) -> None:
    ident = _create_idle(gateway, "downloading")
    doing = "downloading the model: 45 % (135 of 300 MiB)"
    gateway.set_status(ident, engines=[], ready=0, target=1, message=doing)
    gateway.known("admin", "downloading", lambda r: r.message == doing)
    answer = httpx.post(f"{gateway.url}/admin/downloading/generate", json={"inputs": "x"})
    assert answer.status_code == 503
    assert doing in answer.json()["error"]


def test_a_waiting_request_that_meets_a_replica_just_stopped_waits_for_the_next_one(
    gateway: Running, wakes: Wakes, engine: FakeEngine
) -> None:
    # The table still shows the endpoint serving on a replica that has just stopped (scaled to zero a moment ago).
    ident = gateway.create("just-stopped")
    stopped = FakeEngine()
    stopped.close()
    gateway.set_status(ident, engines=[stopped])
    gateway.serving("admin", "just-stopped")
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(
            httpx.post,
            f"{gateway.url}/admin/just-stopped/generate",
            json={"inputs": "hello", "parameters": {"max_new_tokens": 2}},
            headers={"X-Scale-Up-Timeout": "60"},
            timeout=90,
        )
        assert wakes.next() == ident  # refused: the endpoint is woken and the request held, not failed
        wait_for(
            lambda: gateway.figure("dais_gateway_held", "admin/just-stopped") == 1, timeout=10, what="the request held"
        )
        gateway.set_status(ident, engines=[], ready=0, target=0)  # what the table hears next: at zero
        gateway.set_status(ident, engines=[engine])  # then a new replica
        answer = held.result(timeout=30)
    assert answer.status_code == 200
    assert answer.json()["generated_text"]
