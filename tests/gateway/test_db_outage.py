"""`dais gateway` loses its database (a real PostgreSQL, stopped): it keeps routing to the replicas it knew and
passing the tokens it remembers, for at most their cache time, then answers 503 with Retry-After for a token it
cannot check; once the database is back it writes the activity and the metric history it kept, and follows
changes again without a restart."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.bootstrap import ensure_admin
from api.main import create_app
from core.db.metric_samples import Traffic
from core.db.models import Endpoint, EndpointActivity, metric_samples
from gateway.history import BACKLOG, TrafficHistory
from tests.conftest import make_settings
from tests.factories import ADMIN_TOKEN, endpoint_body
from tests.fixtures.engine import FakeEngine
from tests.fixtures.hub import HubServer
from tests.fixtures.kube import die_with_parent, wait_for
from tests.fixtures.outage import DAIS, Database, dais_env, lines_with, restartable_database
from tests.fixtures.postgres import free_port
from tests.fixtures.server import running
from tests.gateway.conftest import write_status

NEVER_SEEN = "dais_never_seen_0123456789abcdef0123"


@pytest.fixture(scope="module")
def database() -> Iterator[Database]:
    with restartable_database() as db:
        yield db


@dataclass
class Setup:
    database: Database
    api: TestClient
    engine: FakeEngine

    def add(self, name: str, access: str) -> str:
        """An endpoint admin/{name} served by the fake engine; returns its id."""

        def created() -> bool:  # just after a restart, the API's first use of a stale connection is a 503
            answer = self.api.post("/v2/endpoint/admin", json=endpoint_body(name, type=access))
            assert answer.status_code in (200, 503), answer.text
            return answer.status_code == 200

        wait_for(created, timeout=30, what=f"admin/{name} created")
        with self.database.sessions() as session:
            endpoint_id = session.scalar(select(Endpoint.id).where(Endpoint.name == name))
        assert endpoint_id is not None
        write_status(self.database.sessions, endpoint_id, engines=[self.engine])
        return endpoint_id


@pytest.fixture(scope="module")
def setup(
    database: Database, engine: FakeEngine, hub_server: HubServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    """The API in this process, to create endpoints and the admin's token; the fake engine serves them all."""
    settings = make_settings(database.url, tmp_path_factory.mktemp("api"), hub_url=hub_server.url)
    ensure_admin(database.sessions, settings, datetime.now(UTC))
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as api:
        yield Setup(database, api, engine)


@dataclass
class Gateway:
    url: str
    internal: str
    log: Path
    answers: dict[str, list[int]] = field(default_factory=dict)  # endpoint name → statuses, in order

    def get(self, name: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = httpx.get(f"{self.url}/admin/{name}/health", headers=headers, timeout=10)
        self.answers.setdefault(name, []).append(answer.status_code)
        return answer

    def status(self, name: str, token: str | None = None) -> int:
        return self.get(name, token).status_code


@pytest.fixture(scope="module")
def gateway(setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("gateway")
    public, internal = free_port(), free_port()
    env = dais_env(
        setup.database.url,
        home,
        DAIS_GATEWAY__LISTEN=f"127.0.0.1:{public}",
        DAIS_GATEWAY__INTERNAL_LISTEN=f"127.0.0.1:{internal}",
        DAIS_GATEWAY__TOKEN_CACHE_SECONDS="4.9",
        DAIS_GATEWAY__ACTIVITY_SECONDS="1",
        DAIS_GATEWAY__POLL_SECONDS="3600",  # changes arrive only by notification (or the resync after a gap)
    )
    log = home / "gateway.log"
    url = f"http://127.0.0.1:{internal}"
    with running([*DAIS, "gateway"], log_path=log, health_url=f"{url}/readyz", name="dais gateway", env=env) as p:
        yield Gateway(f"http://127.0.0.1:{public}", url, log)
        assert p.poll() is None, "the gateway exited"


def test_the_gateway_serves_what_it_knows_while_postgres_is_down_and_catches_up_after(
    setup: Setup, gateway: Gateway
) -> None:
    database = setup.database
    open_id = setup.add("open", "public")
    setup.add("closed", "private")
    wait_for(lambda: gateway.status("open") == 200, timeout=30, what="admin/open routed")
    wait_for(lambda: gateway.status("closed", ADMIN_TOKEN) == 200, timeout=30, what="admin/closed routed")
    assert gateway.status("closed", NEVER_SEEN) == 401

    assert gateway.status("closed", ADMIN_TOKEN) == 200  # remembered from here on, for 4.9 s
    database.stop()
    assert gateway.status("closed", ADMIN_TOKEN) == 200  # remembered: passes without the database
    unchecked = gateway.get("closed", NEVER_SEEN + "x")  # cannot be checked: not a 401
    assert unchecked.status_code == 503
    assert unchecked.headers["retry-after"] == "5"
    assert "the database is unavailable" in unchecked.json()["error"]
    assert gateway.status("open") == 200
    # Past its cache time the remembered token is not trusted any more. Meanwhile the public endpoint is served.
    wait_for(
        lambda: gateway.status("open") == 200 and gateway.status("closed", ADMIN_TOKEN) == 503,
        timeout=30,
        what="the admin's token to need the database again",
    )
    last_request = datetime.now(UTC)
    assert gateway.status("open") == 200
    assert httpx.get(f"{gateway.internal}/readyz").status_code == 200  # routing goes on: not taken out of service
    served = gateway.answers["open"]
    served = served[served.index(200) :]  # from the moment it was routed on
    assert set(served) == {200}

    database.start()
    wait_for(lambda: gateway.status("closed", ADMIN_TOKEN) == 200, timeout=30, what="tokens checked again")
    assert gateway.status("closed", NEVER_SEEN) == 401
    setup.add("late", "public")  # a change after the restart: the gateway listens again
    wait_for(lambda: gateway.status("late") == 200, timeout=30, what="admin/late routed")

    assert set(gateway.answers["closed"]) <= {404, 200, 401, 503}
    # What the gateway counted while the database was away is written once it is back: the last request time
    # (activity, every second here) and every answer in the metric history (every 10 s).

    def activity() -> datetime | None:
        with database.sessions() as session:
            row = session.get(EndpointActivity, (open_id, socket.gethostname()))
            return row.last_request_at if row is not None else None

    wait_for(lambda: (at := activity()) is not None and at >= last_request, timeout=30, what="the outage's activity")

    def answered() -> int:
        with database.sessions() as session:
            found = session.scalar(
                select(func.sum(metric_samples.c.requests_2xx)).where(metric_samples.c.endpoint_id == open_id)
            )
        return int(found or 0)

    wait_for(lambda: answered() == len(served), timeout=40, what=f"{len(served)} answers of admin/open in the history")

    assert lines_with(gateway.log, "database unavailable (pool connection") == 1
    assert lines_with(gateway.log, "database unavailable (notifications connection") == 1
    assert lines_with(gateway.log, "database back (notifications connection)") == 1
    assert lines_with(gateway.log, "could not write") == lines_with(gateway.log, "refresh failed") == 0
    assert lines_with(gateway.log, "Traceback") == 0


def test_a_gateway_started_while_postgres_is_down_waits_for_it_then_serves(setup: Setup, tmp_path: Path) -> None:
    setup.add("early", "public")
    public, internal = free_port(), free_port()
    env = dais_env(
        setup.database.url,
        tmp_path,
        DAIS_GATEWAY__LISTEN=f"127.0.0.1:{public}",
        DAIS_GATEWAY__INTERNAL_LISTEN=f"127.0.0.1:{internal}",
    )
    log = tmp_path / "gateway.log"
    setup.database.stop()
    try:
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*DAIS, "gateway"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(os.getpid()),
            )
        wait_for(
            lambda: lines_with(log, "database unavailable (pool connection") == 1,
            timeout=60,
            what="the gateway to find its database away",
        )
        assert process.poll() is None, log.read_text()  # waiting, not exited
        # Alive to a liveness probe, not ready, and saying so to a client.
        wait_for(lambda: _status(f"http://127.0.0.1:{internal}/healthz") == 200, timeout=30, what="/healthz")
        assert _status(f"http://127.0.0.1:{internal}/readyz") == 503
        early = httpx.get(f"http://127.0.0.1:{public}/admin/early/health", timeout=5)
        assert early.status_code == 503
        assert early.headers["retry-after"] == "1"
        assert "the gateway is starting" in early.json()["error"]
    finally:
        setup.database.start()
    try:

        def serves() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{public}/admin/early/health", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(serves, timeout=60, what="the gateway to serve once its database is back")
        assert httpx.get(f"http://127.0.0.1:{internal}/readyz").status_code == 200
        assert lines_with(log, "database back (pool connection)") == 1
        assert lines_with(log, "Traceback") == 0
    finally:
        process.terminate()
        assert process.wait(timeout=60) == 0, log.read_text()


def _traffic(endpoint_id: str, ok: int, **more: Any) -> Traffic:
    return Traffic(endpoint_id=endpoint_id, requests=(ok, 0, 0, 0), **more)


def test_samples_not_written_for_long_are_folded_not_dropped() -> None:
    history = TrafficHistory()
    at = 1000
    for i in range(BACKLOG + 3):
        batches = history.queue(at + 10 * i, [_traffic("a", 1, pending=1), *([_traffic("b", 2)] if i == 0 else [])])
    assert len(batches) == BACKLOG
    oldest_at, oldest = batches[0]
    assert oldest_at == at + 30  # the fourth sample, holding the first four
    assert {s.endpoint_id: (s.requests[0], s.pending) for s in oldest} == {"a": (4, 4), "b": (2, 0)}
    assert sum(s.requests[0] for _, samples in batches for s in samples) == BACKLOG + 3 + 2
    history.written(batches)
    assert history.queue(at + 100, []) == []


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.TransportError:
        return None
