"""Shared fixtures: a real PostgreSQL (one server and database per xdist worker), the app on a
connection whose outer transaction is rolled back after each test, a live server (``live_server``)
for tests that need real commits (its tables are emptied afterwards), and a real Kubernetes control plane
with fake nodes (``kube_cluster``, one per xdist worker), a local Hugging Face Hub (``hub``), a real
Prometheus scraping a test exporter (``prometheus``), and a real VictoriaLogs fed by a log collector
(``victorialogs``, ``log_collector``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

import migrations
from api.main import build_state, create_app
from core.db.base import Base
from core.db.crypto import new_key
from core.db.session import make_engine, make_sessionmaker
from core.settings import ControllerSettings, HubSettings, Settings
from tests.factories import ADMIN_TOKEN, add_standard_models, make_user
from tests.fixtures.hub import HubServer, isolate_hf_client
from tests.fixtures.kube import KubeCluster, assets_dir
from tests.fixtures.postgres import (
    create_database,
    free_port,
    have_local_postgres,
    postgres_container,
    postgres_server,
)
from tests.fixtures.prometheus import LoadExporter, prometheus_server
from tests.fixtures.victorialogs import LogCollector, victoria_logs_binary, victorialogs_server

SECRET_KEY = new_key()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """DAIS_TEST_DATABASE_URL when given; else Debian's PostgreSQL binaries; else a Docker container."""
    given = os.environ.get("DAIS_TEST_DATABASE_URL")
    if given:
        yield given
    elif have_local_postgres():
        with postgres_server() as url:
            yield url
    else:
        with postgres_container() as url:
            yield url


def _worker(request: pytest.FixtureRequest) -> str:
    return str(getattr(request.config, "workerinput", {}).get("workerid", "main"))  # xdist, when running


@pytest.fixture(scope="session")
def pg_url(pg_server: str, request: pytest.FixtureRequest) -> str:
    url = create_database(pg_server, f"dais_test_{_worker(request)}")
    migrations.upgrade(url)
    return url


@pytest.fixture(scope="session")
def engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


def make_settings(database_url: str, home: Path, *, hub_url: str | None = None, **overrides: Any) -> Settings:
    """Test settings; ``hub_url`` is the local Hub (``hub_server.url``) the API resolves models on."""
    if hub_url is not None:
        overrides.setdefault(
            "hub", HubSettings(url=hub_url, retry_deadline_seconds=3.0, timeout_seconds=5, cache_seconds=0)
        )
    # The API alone, on the shipped hardware catalog (the local runtime's is this machine).
    overrides.setdefault("controller", ControllerSettings(runtime="none"))
    return Settings(
        database_url=database_url,
        secret_key=SECRET_KEY,
        admin_token=ADMIN_TOKEN,
        home=home,
        log_json=False,
        **overrides,
    )


@pytest.fixture
def settings(pg_url: str, tmp_path: Path, hub_server: HubServer) -> Settings:
    return make_settings(pg_url, tmp_path, hub_url=hub_server.url)


@pytest.fixture
def db(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """A session factory whose every transaction is a savepoint inside one outer, rolled-back transaction."""
    with engine.connect() as connection:
        outer = connection.begin()
        yield sessionmaker(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
        outer.rollback()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(settings: Settings, db: sessionmaker[Session], clock: Clock) -> Iterator[TestClient]:
    state = build_state(settings, sessions=db, clock=clock)
    from api.bootstrap import ensure_admin

    ensure_admin(db, settings, clock())
    app = create_app(settings, state=state)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as test_client:
        yield test_client


@pytest.fixture
def alice(db: sessionmaker[Session], clock: Clock) -> str:
    """A plain user 'alice'; returns her token."""
    with db() as session, session.begin():
        return make_user(session, "alice", now=clock())


def _truncate(engine: Engine) -> None:
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))


class LiveServer:
    def __init__(self, url: str, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.url = url
        self.settings = settings
        self.sessions = sessions


@pytest.fixture(scope="module")
def live_server(
    pg_url: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, hub_server: HubServer
) -> Iterator[LiveServer]:
    """The API served by uvicorn on a free loopback port, committing for real (tables emptied after).

    A test module may define ``live_server_settings(home) -> dict`` to override settings."""
    from api.bootstrap import ensure_admin

    home = tmp_path_factory.mktemp("home")
    overrides = getattr(request.module, "live_server_settings", lambda _: {})(home)
    settings = make_settings(pg_url, home, hub_url=hub_server.url, **overrides)
    engine = make_engine(pg_url)
    sessions = make_sessionmaker(engine)
    _truncate(engine)
    ensure_admin(sessions, settings, datetime.now(UTC))
    app = create_app(settings, state=build_state(settings, sessions=sessions), access_log=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    started = threading.Event()
    deadline = datetime.now(UTC).timestamp() + 20
    while not server.started:
        if datetime.now(UTC).timestamp() > deadline or not thread.is_alive():
            raise RuntimeError("live server did not start")
        started.wait(0.02)
    yield LiveServer(f"http://127.0.0.1:{port}", settings, sessions)
    server.should_exit = True
    thread.join(timeout=10)
    _truncate(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def kube_cluster(request: pytest.FixtureRequest) -> Iterator[KubeCluster]:
    """etcd, kube-apiserver, KCM, scheduler and kwok with 2 CPU nodes and one GPU node per catalog GPU selector."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    # The first-time build takes minutes: let its progress reach the terminal.
    with capture.global_and_fixture_disabled() if capture else nullcontext():
        assets = assets_dir()
    with KubeCluster(assets, name=_worker(request)) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def load_exporter() -> Iterator[LoadExporter]:
    """cAdvisor-like and DCGM-like series for the pods a test names (tests/fixtures/prometheus.py)."""
    exporter = LoadExporter()
    yield exporter
    exporter.close()


@pytest.fixture(scope="session")
def prometheus(load_exporter: LoadExporter) -> Iterator[str]:
    """A real Prometheus scraping ``load_exporter`` every second, one per xdist worker; yields its URL."""
    with prometheus_server([f"127.0.0.1:{load_exporter.port}"]) as url:
        yield url


@pytest.fixture(scope="session")
def victorialogs(request: pytest.FixtureRequest) -> Iterator[str]:
    """A real VictoriaLogs (tests/fixtures/victorialogs.py), one per xdist worker; yields its base URL."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    # Built with the cluster's binaries: the first-time build takes minutes, let its progress show.
    with capture.global_and_fixture_disabled() if capture else nullcontext():
        binary = victoria_logs_binary()
    with victorialogs_server(binary) as url:
        yield url


@pytest.fixture
def log_collector(victorialogs: str) -> Iterator[LogCollector]:
    """Ships pod log lines to ``victorialogs`` the way an operator's collector would, queryable on return."""
    collector = LogCollector(victorialogs)
    yield collector
    collector.close()


@pytest.fixture(scope="session")
def hub_server() -> Iterator[HubServer]:
    """A local Hugging Face Hub (tests/fixtures/hub.py), one per xdist worker; tests use ``hub``."""
    with HubServer() as server:
        add_standard_models(server)
        yield server


@pytest.fixture
def hub(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HubServer]:
    """``hub_server`` with no repos, faults or logged requests, and huggingface_hub's cache and token kept to this
    test (``HF_HUB_CACHE`` under tmp_path, no ``HF_TOKEN``): pass ``endpoint=hub.url``."""
    hub_server.reset()
    add_standard_models(hub_server)
    isolate_hf_client(monkeypatch, tmp_path / "hf-home")
    yield hub_server
    hub_server.reset()  # drop the test's bytes now rather than at the next test
    add_standard_models(hub_server)
