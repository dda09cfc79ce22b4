"""The single-process default: the whole API on SQLite, as `make serve` runs it: the local runtime, whose
hardware catalog is this machine."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi.testclient import TestClient

import migrations
from api.bootstrap import ensure_admin
from api.deps import AppState
from api.main import build_state, create_app
from core.db.changes import LocalBus
from core.settings import HubSettings, Settings
from tests.factories import ADMIN_TOKEN, endpoint_body
from tests.fixtures.hub import HubServer

# This machine's CPU row, as `GET /v2/provider/{namespace}` lists it on the local default.
LOCAL = {
    "provider": {"vendor": "local", "region": "local"},
    "compute": {
        "accelerator": "cpu",
        "instanceType": "cpu",
        "instanceSize": "x1",
        "scaling": {"minReplica": 1, "maxReplica": 1},
    },
}


def local_default(home: Path, hub: HubServer) -> tuple[Settings, AppState]:
    """The API as `make serve` builds it: SQLite in ``home``, the local runtime, the admin token."""
    settings = Settings(home=home, admin_token=ADMIN_TOKEN, log_json=False, hub=HubSettings(url=hub.url))
    migrations.upgrade(settings.effective_database_url)
    state = build_state(settings)
    ensure_admin(state.sessions, settings, state.clock())
    return settings, state


def test_crud_on_sqlite(tmp_path: Path, hub_server: HubServer) -> None:
    settings, state = local_default(tmp_path, hub_server)
    assert (tmp_path / "secret.key").exists(), "the local default generates its secret key"
    with TestClient(create_app(settings, state=state), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        body = endpoint_body(provider=LOCAL["provider"], compute=LOCAL["compute"])
        body["model"]["secrets"] = {"KEY": "v"}
        assert client.post("/v2/endpoint/admin", json=body).status_code == 200
        assert client.post("/v2/endpoint/admin", json=body).status_code == 409
        updated = client.put("/v2/endpoint/admin/my-ep", json={"compute": {"scaling": {"maxReplica": 2}}}).json()
        assert updated["compute"]["scaling"]["maxReplica"] == 2
        assert updated["status"]["generation"] == 2
        assert updated["model"]["secrets"] == {"KEY": "**redacted**"}
        assert client.post("/v2/endpoint/admin/my-ep/pause").json()["status"]["state"] == "paused"
        assert client.delete("/v2/endpoint/admin/my-ep").status_code == 200
        assert client.get("/v2/endpoint/admin").json()["items"] == []
        assert client.get("/readyz").status_code == 200


def test_the_local_default_offers_this_machine_at_no_cost(tmp_path: Path, hub_server: HubServer) -> None:
    settings, state = local_default(tmp_path, hub_server)
    with TestClient(create_app(settings, state=state), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        listed = client.get("/v2/provider/admin").json()
        (vendor,) = listed["vendors"]
        assert vendor["name"] == "local"
        (cpu,) = [t for r in vendor["regions"] for t in r["computes"] if t["accelerator"] == "cpu"]
        assert cpu["numCpus"] == (os.cpu_count() or 1)
        assert cpu["pricePerHour"] == 0
        refused = client.post("/v2/endpoint/admin", json=endpoint_body())  # a cloud row: not on this machine
        assert refused.status_code == 400
        assert "local" in refused.text


def test_admin_token_is_created_once_or_taken_from_settings(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, log_json=False)
    migrations.upgrade(settings.effective_database_url)
    state = build_state(settings)
    first = ensure_admin(state.sessions, settings, state.clock())
    assert first is not None
    assert first.startswith("dais_")
    assert ensure_admin(state.sessions, settings, state.clock()) is None, "printed once only"
    with TestClient(create_app(settings, state=state)) as client:
        assert client.get("/api/whoami-v2", headers={"Authorization": f"Bearer {first}"}).json()["name"] == "admin"
    # A restart with DAIS_ADMIN_TOKEN set: that token works and replaces the generated one.
    configured = Settings(home=tmp_path, admin_token="dais_configured_token", log_json=False)
    restarted = build_state(configured)
    assert ensure_admin(restarted.sessions, configured, restarted.clock()) is None
    with TestClient(create_app(configured, state=restarted)) as client:
        ok = client.get("/api/whoami-v2", headers={"Authorization": "Bearer dais_configured_token"})
        assert ok.status_code == 200
        replaced = client.get("/api/whoami-v2", headers={"Authorization": f"Bearer {first}"})
        assert replaced.status_code == 401, "the configured admin token replaces the generated one"


def test_every_endpoint_write_is_announced_after_commit_on_sqlite(tmp_path: Path, hub_server: HubServer) -> None:
    """`dais serve` has no Postgres triggers: its controller hears of changes through the in-process bus,
    which must see the service's Core writes, and nothing from a request that failed."""
    settings, state = local_default(tmp_path, hub_server)
    heard: list[str] = []
    bus = LocalBus()
    bus.attach(state.sessions)
    bus.subscribe(heard.append)
    with TestClient(create_app(settings, state=state), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        created = client.post("/v2/endpoint/admin", json=endpoint_body(**LOCAL))
        assert created.status_code == 200
        (endpoint_id,) = heard
        assert client.post("/v2/endpoint/admin", json=endpoint_body(**LOCAL)).status_code == 409
        too_many = client.put("/v2/endpoint/admin/my-ep", json={"compute": {"scaling": {"maxReplica": 10_000}}})
        assert too_many.status_code == 400
        assert heard == [endpoint_id], "a refused write announces nothing"
        for call in (
            lambda: client.put("/v2/endpoint/admin/my-ep", json={"compute": {"scaling": {"maxReplica": 2}}}),
            lambda: client.post("/v2/endpoint/admin/my-ep/scale-to-zero"),
            lambda: client.post("/v2/endpoint/admin/my-ep/pause"),
            lambda: client.post("/v2/endpoint/admin/my-ep/resume"),
            lambda: client.delete("/v2/endpoint/admin/my-ep"),
        ):
            before = len(heard)
            assert call().status_code == 200
            assert heard[before:] == [endpoint_id]


def test_each_gpu_model_of_the_machine_is_an_instance_with_its_memory() -> None:
    from core.domain import machine
    from core.domain.catalog import parse_hardware_catalog

    raw = machine.catalog(cores=16, memory=128.0, gpus=[machine.Gpu("NVIDIA H200", 139.8)] * 2)
    rows = {c.id: c for c in parse_hardware_catalog(raw, default_quota=4).computes}
    assert set(rows) == {"local-local-cpu-x1", "local-local-nvidia-h200-x1", "local-local-nvidia-h200-x2"}
    two = rows["local-local-nvidia-h200-x2"]
    assert (two.num_accelerators, two.gpu_memory_gb, two.memory_gb, two.num_cpus) == (2, 279.6, 128.0, 16)
    assert all(c.price_per_hour == 0 for c in rows.values())


def test_a_container_image_is_refused_on_the_local_runtime_saying_why(tmp_path: Path, hub_server: HubServer) -> None:
    settings, state = local_default(tmp_path, hub_server)
    with TestClient(create_app(settings, state=state), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        body = endpoint_body(**LOCAL)
        body["model"]["image"] = {"custom": {"url": "ghcr.io/me/engine:1", "healthRoute": "/health", "port": 8080}}
        refused = client.post("/v2/endpoint/admin", json=body)
        assert refused.status_code == 400
        assert "no container runtime" in refused.json()["error"]
        assert refused.json()["fields"][0]["field"] == "model.image"
        assert client.get("/v2/endpoint/admin").json()["items"] == [], "nothing half-written stays"


def test_a_model_too_large_for_this_machine_is_refused_at_create(tmp_path: Path, hub_server: HubServer) -> None:
    from tests.hub.test_resolution import header_only_safetensors

    hub_server.add_model("org/huge", {"model.safetensors": header_only_safetensors(400_000_000_000)})
    settings, state = local_default(tmp_path, hub_server)
    with TestClient(create_app(settings, state=state), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        body = endpoint_body(**LOCAL)
        body["model"]["repository"] = "org/huge"
        refused = client.post("/v2/endpoint/admin", json=body)
        assert refused.status_code == 400, refused.text
        said = refused.json()["error"]
        assert "local-local-cpu-x1 has" in said  # this machine's memory, detected
        assert "pick a smaller or quantized model" in said
