"""A PostgreSQL restart under load, with the real processes: `dais api` answers 503 with Retry-After while the
database is away and serves again by itself, losing no write it acknowledged; `dais controller` and
`dais autoscaler` wait, log the outage once, and go on without a restart, the controller resyncing what it was
not told while it listened to nobody."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select, text

from core.db.models import Endpoint
from tests.factories import ADMIN_TOKEN, endpoint_body
from tests.fixtures import scrape
from tests.fixtures.hub import HubServer
from tests.fixtures.kube import KubeCluster, wait_for
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

    assert writers.count(None) == 0, "every request was answered: the API stayed up, only its database went"
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


@dataclass
class Component:
    url: str  # /healthz and /metrics
    log: Path

    def metric(self, name: str, **labels: str) -> float | None:
        try:
            return scrape.value(httpx.get(f"{self.url}/metrics", timeout=5).text, name, **labels)
        except httpx.TransportError:
            return None


@contextmanager
def component(command: str, home: Path, env: dict[str, str]) -> Iterator[Component]:
    port = free_port()
    env[f"DAIS_{command.upper()}__LISTEN"] = f"127.0.0.1:{port}"
    url, log = f"http://127.0.0.1:{port}", home / f"{command}.log"
    with running([*DAIS, command], log_path=log, health_url=f"{url}/healthz", name=f"dais {command}", env=env) as p:
        yield Component(url, log)
        assert p.poll() is None, f"dais {command} exited:\n{log.read_text()[-3000:]}"


def _cpu_endpoint(name: str) -> dict[str, Any]:
    body = endpoint_body(name)
    body["compute"].update(accelerator="cpu", instanceType="intel-spr", instanceSize="x1")
    body["model"].update(image={"tei": {}}, task="feature-extraction")
    return body


def test_the_controller_and_autoscaler_wait_out_a_restart_and_resync_what_nobody_heard(
    database: Database, api: Api, kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    # The controller logs in as a role of its own, which the test keeps out for a moment after the restart: a
    # change committed then is announced to nobody, deterministically.
    with database.sessions.begin() as session:
        session.execute(text("CREATE ROLE dais_controller SUPERUSER LOGIN"))
    controller_url = database.url.replace("//dais@", "//dais_controller@", 1)
    namespace = f"dais-pg-outage-{uuid.uuid4().hex[:6]}"
    controller_env = dais_env(
        controller_url,
        tmp_path,
        DAIS_CONTROLLER__KUBECONFIG=str(kube_cluster.kubeconfig),
        DAIS_CONTROLLER__NAMESPACE=namespace,
        DAIS_CONTROLLER__LEASE_SECONDS="4",
        DAIS_CONTROLLER__RENEW_SECONDS="0.5",
        DAIS_CONTROLLER__IMAGE="dais:test",
        DAIS_CONTROLLER__RESYNC_SECONDS="3600",  # only a notification, or the resync after a gap, finds a change
    )
    autoscaler_env = dais_env(
        database.url, tmp_path, DAIS_CONTROLLER__RUNTIME="none", DAIS_AUTOSCALER__TICK_SECONDS="1"
    )
    client = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)

    def state(name: str) -> str | None:
        answer = client.get(f"/v2/endpoint/{NS}/{name}")
        return answer.json()["status"]["state"] if answer.status_code == 200 else None

    def written(method: str, path: str, body: object = None) -> bool:
        answer = client.request(method, path, json=body)
        assert answer.status_code in (200, 503), answer.text  # 503: the API's first try on a stale connection
        return answer.status_code == 200

    with (
        component("controller", tmp_path, controller_env) as controller,
        component("autoscaler", tmp_path, autoscaler_env) as autoscaler,
    ):
        assert written("POST", f"/v2/endpoint/{NS}", _cpu_endpoint("before"))
        wait_for(lambda: state("before") == "running", timeout=60, what="'before' to run")

        with database.sessions.begin() as session:
            session.execute(text("ALTER ROLE dais_controller NOLOGIN"))  # its open sessions stay, until the stop
        database.stop()
        wait_for(
            lambda: (
                controller.metric("dais_database_up", connection="notifications") == 0
                and autoscaler.metric("dais_database_up", connection="pool") == 0
            ),
            timeout=30,
            what="the controller and the autoscaler to notice the outage",
        )
        database.start()
        wait_for(lambda: written("POST", f"/v2/endpoint/{NS}/before/pause"), timeout=30, what="'before' paused")
        with database.sessions.begin() as session:
            session.execute(text("ALTER ROLE dais_controller LOGIN"))

        wait_for(lambda: state("before") == "paused", timeout=60, what="the controller to act on the missed change")
        assert written("POST", f"/v2/endpoint/{NS}", _cpu_endpoint("after"))  # heard: it listens again
        wait_for(lambda: state("after") == "running", timeout=60, what="'after' to run")
        ticked = autoscaler.metric("dais_autoscaler_ticks_total", result="success") or 0
        wait_for(
            lambda: (autoscaler.metric("dais_autoscaler_ticks_total", result="success") or 0) > ticked,
            timeout=30,
            what="the autoscaler to tick again",
        )
        assert controller.metric("dais_database_up", connection="notifications") == 1
        assert autoscaler.metric("dais_database_up", connection="pool") == 1

    # Each connection logs the outage once and its end once, however many attempts failed in between.
    for what in ("unavailable (notifications connection", "back (notifications connection)"):
        assert lines_with(controller.log, f"database {what}") == 1
        assert lines_with(autoscaler.log, f"database {what}") == 1
    assert lines_with(autoscaler.log, "database unavailable (pool connection") == 1
    assert lines_with(controller.log, "database unavailable (pool connection") <= 1  # idle workers may not notice
    for log in (controller.log, autoscaler.log):
        assert lines_with(log, "Traceback") == lines_with(log, " ERROR ") == 0
