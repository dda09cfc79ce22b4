"""A slow Hub or log store holds no lock and no database connection: the API asks them with no transaction
open (api/endpoint/hub_calls.py, the logs route), on a live server over real HTTP and a real PostgreSQL."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.pool import QueuePool

from api.endpoint.hub_calls import Answers, NeedsHub, with_hub
from api.errors import Conflict
from api.main import build_state, create_app
from core.db.session import make_engine, make_sessionmaker
from core.settings import ControllerSettings, LogsSettings
from tests.conftest import LiveServer, make_settings
from tests.factories import ADMIN_TOKEN, endpoint_body
from tests.fixtures.hub import HubServer
from tests.fixtures.prometheus import SilentServer

HELD_MODEL = "org/model"


def http(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)


def engine_of(server: LiveServer) -> Engine:
    bind = server.sessions.kw["bind"]
    assert isinstance(bind, Engine)
    return bind


def connections_in_use(server: LiveServer) -> int:
    pool = engine_of(server).pool
    assert isinstance(pool, QueuePool)
    return pool.checkedout()


def open_transactions(server: LiveServer) -> list[str]:
    """The states of the database's other sessions that sit in a transaction, waiting on nothing of their own."""
    with engine_of(server).connect() as connection:
        return list(
            connection.scalars(
                text(
                    "SELECT state FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
                )
            )
        )


def hub_asked(hub: HubServer, repository: str) -> int:
    return sum(1 for r in hub.requests if r.path.startswith(f"/api/models/{repository}"))


def test_a_pause_goes_through_while_an_update_waits_on_the_hub(live_server: LiveServer, hub: HubServer) -> None:
    """The update asks the Hub with no lock held: the pause answers at once. The update then applies on top of the
    pause (which changed nothing the Hub's answer depends on), so the endpoint stays paused, with the new model."""
    with http(live_server) as client:
        created = client.post("/v2/endpoint/admin", json=endpoint_body("slow-hub"))
        assert created.status_code == 200, created.text
    held = hub.hold(f"/api/models/{HELD_MODEL}")
    with ThreadPoolExecutor(1) as pool, http(live_server) as client:
        update: Future[httpx.Response] = pool.submit(
            client.put, "/v2/endpoint/admin/slow-hub", json={"model": {"repository": HELD_MODEL}}
        )
        try:
            assert held.wait_arrived(), "the update never asked the Hub"
            assert connections_in_use(live_server) == 0, "the update holds a connection while it waits"
            assert open_transactions(live_server) == []
            paused = client.post("/v2/endpoint/admin/slow-hub/pause")
            assert paused.status_code == 200, paused.text
            assert not update.done(), "the Hub is still held: the update cannot have finished"
        finally:
            held.release()
        updated = update.result(timeout=30)
        assert updated.status_code == 200, updated.text
        shown = client.get("/v2/endpoint/admin/slow-hub").json()
    assert updated.json()["status"]["generation"] == 3  # created 1, paused 2, updated 3
    assert shown["model"]["repository"] == HELD_MODEL
    assert shown["status"]["state"] == "paused"
    assert hub_asked(hub, HELD_MODEL) == 1  # the pause changed nothing the answer depends on: asked once


def test_an_update_asks_the_hub_again_when_the_hardware_changed_while_it_waited(
    live_server: LiveServer, hub: HubServer
) -> None:
    """Whether a model fits depends on the hardware: an answer for the old hardware is not used for the new one."""
    with http(live_server) as client:
        assert client.post("/v2/endpoint/admin", json=endpoint_body("moving")).status_code == 200
    held = hub.hold(f"/api/models/{HELD_MODEL}")
    with ThreadPoolExecutor(1) as pool, http(live_server) as client:
        update = pool.submit(client.put, "/v2/endpoint/admin/moving", json={"model": {"repository": HELD_MODEL}})
        try:
            assert held.wait_arrived(), "the update never asked the Hub"
            bigger = client.put("/v2/endpoint/admin/moving", json={"compute": {"instanceSize": "x4"}})
            assert bigger.status_code == 200, bigger.text
        finally:
            held.release()
        updated = update.result(timeout=30)
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert (body["model"]["repository"], body["compute"]["instanceSize"]) == (HELD_MODEL, "x4")
    assert hub_asked(hub, HELD_MODEL) == 2  # once for x1, again for x4


def test_an_update_whose_if_match_a_pause_overtook_is_refused(live_server: LiveServer, hub: HubServer) -> None:
    """If-Match is checked when the update writes: a pause that landed while the Hub was asked makes it stale."""
    with http(live_server) as client:
        created = client.post("/v2/endpoint/admin", json=endpoint_body("guarded"))
        assert created.status_code == 200, created.text
        etag = created.headers["etag"]
    held = hub.hold(f"/api/models/{HELD_MODEL}")
    with ThreadPoolExecutor(1) as pool, http(live_server) as client:
        update = pool.submit(
            client.put,
            "/v2/endpoint/admin/guarded",
            json={"model": {"repository": HELD_MODEL}},
            headers={"If-Match": etag},
        )
        try:
            assert held.wait_arrived(), "the update never asked the Hub"
            assert client.post("/v2/endpoint/admin/guarded/pause").status_code == 200
        finally:
            held.release()
        refused = update.result(timeout=30)
        shown = client.get("/v2/endpoint/admin/guarded").json()
    assert refused.status_code == 412, refused.text
    assert "GET it again and retry with the new ETag" in refused.json()["error"]
    assert shown["model"]["repository"] == "openai-community/gpt2"


def test_a_create_waiting_on_the_hub_holds_no_connection(live_server: LiveServer, hub: HubServer) -> None:
    held = hub.hold(f"/api/models/{HELD_MODEL}")
    body = endpoint_body("patient", model={**endpoint_body()["model"], "repository": HELD_MODEL})
    with ThreadPoolExecutor(1) as pool, http(live_server) as client:
        create = pool.submit(client.post, "/v2/endpoint/admin", json=body)
        try:
            assert held.wait_arrived(), "the create never asked the Hub"
            assert connections_in_use(live_server) == 0
            assert open_transactions(live_server) == []
        finally:
            held.release()
        assert create.result(timeout=30).status_code == 200


def test_a_question_that_keeps_changing_is_a_conflict_naming_what_changed() -> None:
    asked: list[tuple[str, int]] = []

    def run(answers: Answers) -> None:
        key = ("resolve", len(asked))  # each run sees the spec changed again
        answers.get(key, lambda: asked.append(key))

    with pytest.raises(Conflict, match="endpoint admin/busy kept changing while the Hub was asked"):
        with_hub(run, what="endpoint admin/busy")
    assert len(asked) == 4


def test_an_answer_is_reused_for_the_same_question_only() -> None:
    runs: list[int] = []

    def run(answers: Answers) -> str:
        runs.append(1)
        return answers.get("q", lambda: "answer")

    assert with_hub(run, what="x") == "answer"
    assert len(runs) == 2  # asked once, outside, then used
    with pytest.raises(NeedsHub):
        Answers().get("q", lambda: "answer")


def test_a_hung_log_store_holds_no_connection(live_server: LiveServer, tmp_path: Path) -> None:
    """The logs route on the Kubernetes runtime reads the database first, then the log store and the pods."""
    with http(live_server) as client:
        assert client.post("/v2/endpoint/admin", json=endpoint_body("logged")).status_code == 200
    with SilentServer() as store, SilentServer() as apiserver:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
            f"clusters: [{{name: c, cluster: {{server: '{apiserver.url}'}}}}]\n"
            "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
        )
        settings = make_settings(
            live_server.settings.effective_database_url,
            tmp_path,
            controller=ControllerSettings(kubeconfig=kubeconfig, runtime="kubernetes"),
            logs=LogsSettings(store_url=store.url, timeout_seconds=60),
        )
        engine = make_engine(settings.effective_database_url)
        pool = engine.pool
        assert isinstance(pool, QueuePool)
        app = create_app(settings, state=build_state(settings, sessions=make_sessionmaker(engine)))
        with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as api, ThreadPoolExecutor(1) as pool_:
            answer = pool_.submit(api.get, "/v2/endpoint/admin/logged/logs")
            try:
                assert store.wait_requests(), "the logs route never asked the log store"
                assert pool.checkedout() == 0, "the logs route holds a connection while the log store hangs"
            finally:
                store.hang_up()
            refused = answer.result(timeout=30)
        engine.dispose()
    assert refused.status_code == 503, refused.text
    assert "the log store is unavailable" in refused.json()["error"]
