"""A PostgreSQL restart under load, with the real process: `dais api` answers 503 with Retry-After while the
database is away and serves again by itself, losing no write it acknowledged."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import select

from core.db.models import Endpoint
from tests.factories import ADMIN_TOKEN, endpoint_body
from tests.fixtures.hub import HubServer
from tests.fixtures.kube import wait_for
from tests.fixtures.outage import DAIS, Database, dais_env, lines_with, restartable_database
from tests.fixtures.postgres import free_port
from tests.fixtures.server import running

NS = "admin"
WRITERS = 3


@pytest.fixture(scope="module")
def database() -> Iterator[Database]:
    with restartable_database() as db:
        yield db


@dataclass
class Api:
    url: str
    log: Path


@pytest.fixture(scope="module")
def api(database: Database, hub_server: HubServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    home = tmp_path_factory.mktemp("api")
    port = free_port()
    env = dais_env(
        database.url,
        home,
        DAIS_HUB__URL=hub_server.url,
        DAIS_CONTROLLER__RUNTIME="none",
        DAIS_DEFAULT_QUOTA_ACCELERATORS="100000",  # every write below creates an endpoint
    )
    url = f"http://127.0.0.1:{port}"
    log = home / "api.log"
    with running(
        [*DAIS, "api", "--port", str(port)], log_path=log, health_url=f"{url}/readyz", name="dais api", env=env
    ):
        yield Api(url, log)


@dataclass(frozen=True)
class Outcome:
    name: str  # the endpoint written
    sequence: int  # for an update: the tag it wrote; creates: 0
    status: int | None  # None: no answer (the connection failed)
    retry_after: str | None = None
    body: bytes = b""


class Writers:
    """Threads that each create endpoints and update one of their own (its tag: seq-N, N increasing), as fast
    as the API answers, recording every outcome."""

    def __init__(self, url: str, count: int) -> None:
        self.url = url
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write, args=(i,), daemon=True) for i in range(count)]

    def __enter__(self) -> Writers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def count(self, status: int | None) -> int:
        with self._lock:
            return sum(o.status == status for o in self.outcomes)

    def _write(self, writer: int) -> None:
        own = f"own-{writer}"
        with httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=20) as api:
            created = api.post(f"/v2/endpoint/{NS}", json=endpoint_body(own))
            assert created.status_code == 200, created.text
            sequence = 0
            while not self._stop.is_set():
                sequence += 1
                name = f"w{writer}-{sequence}"
                self._record(api, name, 0, "POST", f"/v2/endpoint/{NS}", endpoint_body(name))
                self._record(api, own, sequence, "PUT", f"/v2/endpoint/{NS}/{own}", {"tags": [f"seq-{sequence}"]})

    def _record(self, api: httpx.Client, name: str, sequence: int, method: str, path: str, body: object) -> None:
        try:
            answer = api.request(method, path, json=body)
            outcome = Outcome(name, sequence, answer.status_code, answer.headers.get("retry-after"), answer.content)
        except httpx.TransportError:
            outcome = Outcome(name, sequence, None)
        with self._lock:
            self.outcomes.append(outcome)


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.TransportError:
        return None


def test_the_api_answers_503_through_a_restart_and_keeps_every_write_it_acknowledged(
    database: Database, api: Api
) -> None:
    with Writers(api.url, WRITERS) as writers:
        wait_for(lambda: writers.count(200) >= 10, timeout=60, what="writes before the outage")
        database.stop()
        wait_for(lambda: writers.count(503) >= 5, timeout=30, what="503s while the database is down")
        down = httpx.get(f"{api.url}/readyz", timeout=5)
        database.start()
        before = writers.count(200)
        wait_for(lambda: writers.count(200) >= before + 20, timeout=60, what="writes acknowledged again")

    assert down.status_code == 503
    assert down.headers["retry-after"]
    assert "database unreachable" in down.json()["error"]
    assert _status(f"{api.url}/readyz") == 200

    refused = [o for o in writers.outcomes if o.status not in (200, None)]
    assert {o.status for o in refused} == {503}, [o.body for o in refused if o.status != 503][:3]
    for outcome in refused:
        assert outcome.retry_after == "5"
        body = orjson.loads(outcome.body)
        assert body["statusCode"] == 503
        assert "the database is unavailable" in body["error"]

    with database.sessions() as session:
        stored = {e.name: e for e in session.scalars(select(Endpoint).where(Endpoint.deleted_at.is_(None)))}
    acknowledged = [o for o in writers.outcomes if o.status == 200]
    assert not [o.name for o in acknowledged if o.name not in stored]
    for writer in range(WRITERS):
        own = f"own-{writer}"
        last = max((o.sequence for o in acknowledged if o.name == own), default=0)
        tags = stored[own].spec.get("tags") or ["seq-0"]
        # A write that got no answer may have been stored; one that got 200 must have been.
        assert int(tags[0].removeprefix("seq-")) >= last

    # One line when the outage began and one when it ended, however many requests failed in between.
    assert lines_with(api.log, "database unavailable (pool connection") == 1
    assert lines_with(api.log, "database back (pool connection)") == 1
    assert lines_with(api.log, "Traceback") == 0
