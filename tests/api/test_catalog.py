"""The model catalog: ``/api/v1/catalog`` through the real ``huggingface_hub`` client (reference §7), the ≤ 1.33
``/api/catalog`` routes through plain HTTP, and the catalog file's validation.

The catalog here is this module's own YAML (``CATALOG``), over tiny models the local Hub serves.
"""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import huggingface_hub.constants as hf_constants
import pytest
from fastapi.testclient import TestClient
from huggingface_hub import HfApi, InferenceEndpoint
from huggingface_hub.errors import BadRequestError, HfHubHTTPError
from sqlalchemy.orm import Session, sessionmaker

from api.catalog import service
from api.catalog.schemas import CatalogList, Deployed, RepoList
from api.main import build_state
from core.domain.catalog import CatalogError, load_engine_catalog, load_model_catalog, parse_model_catalog
from core.domain.spec import NAME_PATTERN
from core.settings import Settings
from tests.conftest import LiveServer, make_settings
from tests.factories import ADMIN_TOKEN
from tests.fixtures.hub import HubServer, gguf_bytes

NS = "admin"
GGUF_REPO = "test-org/tiny-GGUF"
CATALOG = """
models:
  - repoId: test-org/tiny-GGUF
    license: apache-2.0
    task: text-generation
    createdAt: 2026-01-15
    recipes:
      - publicId: tiny-q4-cpu
        accelerator: cpu
        engineType: llamacpp
        ggufFile: tiny-q4_k_m.gguf
        hardware: {vendor: aws, region: us-east-1, instanceType: intel-spr, instanceSize: x2}
        scaling: {minReplica: 0, maxReplica: 2, scaleToZeroTimeout: 30}
        options: {ctxSize: 2048}
      - publicId: tiny-q8-cpu
        accelerator: cpu
        engineType: llamacpp
        ggufFile: tiny-q8_0.gguf
  - repoId: org/embedder
    license: MIT
    task: feature-extraction
    createdAt: 2026-02-01T10:30:00Z
    recipes:
      - publicId: embedder-tei-cpu
        accelerator: cpu
        engineType: tei
        env: {LOG_LEVEL: debug}
  - repoId: org/model
    modelName: Tiny Model
    license: Apache 2.0
    task: text-generation
    createdAt: 2026-03-01
    recipes:
      - publicId: model-vllm-gpu
        accelerator: gpu
        engineType: vllm
        revision: main
        hardware: {instanceType: nvidia-l4, instanceSize: x1}
        scaling: {minReplica: 1, maxReplica: 1}
        type: private
        options: {maxModelLen: 1024}
      - publicId: model-tgi-gpu
        accelerator: gpu
        engineType: tgi
"""
REPOS = [GGUF_REPO, "org/embedder", "org/model"]


def _write_catalog(folder: Path) -> Path:
    path = folder / "models.yaml"
    path.write_text(CATALOG, encoding="utf-8")
    return path


def live_server_settings(home: Path) -> dict[str, Any]:
    return {"model_catalog": _write_catalog(home)}


@pytest.fixture
def settings(pg_url: str, tmp_path: Path, hub_server: HubServer) -> Settings:
    """The ``client`` fixture's settings, with this module's catalog."""
    return make_settings(pg_url, tmp_path, hub_url=hub_server.url, model_catalog=_write_catalog(tmp_path))


@pytest.fixture(autouse=True)
def gguf_model(hub_server: HubServer) -> None:
    """The GGUF repository of the catalog (the standard models are always there)."""
    hub_server.add_model(
        GGUF_REPO,
        {
            "tiny-q4_k_m.gguf": gguf_bytes({"token_embd.weight": [64, 32]}),
            "tiny-q8_0.gguf": gguf_bytes({"token_embd.weight": [64, 64]}),
        },
        pipeline_tag="text-generation",
    )


@pytest.fixture
def hf(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> HfApi:
    """An ``HfApi`` with both Inference Endpoints constants redirected to the live server (reference §1)."""
    monkeypatch.setattr(hf_constants, "INFERENCE_ENDPOINTS_ENDPOINT", f"{live_server.url}/v2")
    monkeypatch.setattr(hf_constants, "INFERENCE_CATALOG_ENDPOINT", f"{live_server.url}/api/v1/catalog")
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_EXPERIMENTAL_WARNING", True)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    monkeypatch.setenv("HF_TOKEN", ADMIN_TOKEN)
    return HfApi(endpoint=live_server.url, token=ADMIN_TOKEN)


def _get(live_server: LiveServer, path: str, **params: str) -> Any:
    response = httpx.get(
        f"{live_server.url}{path}", params=params, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def _cheapest(live_server: LiveServer, repository: str, accelerator: str) -> str:
    """The row GET /v2/recommendation ranks first for the accelerator."""
    rows = _get(live_server, "/v2/recommendation", repository=repository)["items"]
    return str(next(row["id"] for row in rows if row["accelerator"] == accelerator))


# -- listing through the real client --------------------------------------------------------------------


def test_list_inference_catalog_with_the_real_client(hf: HfApi) -> None:
    everything = hf.list_inference_catalog()
    assert [m.repo_id for m in everything] == REPOS
    tiny = everything[0]
    assert (tiny.name, tiny.author, tiny.license, tiny.task) == (
        "tiny-GGUF",
        "test-org",
        "apache-2.0",
        "text-generation",
    )
    assert tiny.created_at == datetime(2026, 1, 15, tzinfo=UTC)
    assert [(r.id, r.accelerator, r.engine, r.gguf_file, r.revision) for r in tiny.recipes] == [
        ("tiny-q4-cpu", "cpu", "llamacpp", "tiny-q4_k_m.gguf", None),
        ("tiny-q8-cpu", "cpu", "llamacpp", "tiny-q8_0.gguf", None),
    ]
    assert everything[1].created_at == datetime(2026, 2, 1, 10, 30, tzinfo=UTC)
    assert everything[2].name == "Tiny Model"
    assert everything[2].recipes[0].revision == "main"

    def listed(**filters: Any) -> list[tuple[str, list[str]]]:
        return [(m.repo_id, [r.id for r in m.recipes]) for m in hf.list_inference_catalog(**filters)]

    assert listed(accelerator="gpu") == [("org/model", ["model-vllm-gpu", "model-tgi-gpu"])]
    assert listed(engine="tgi") == [("org/model", ["model-tgi-gpu"])]  # only the recipes that match
    assert listed(engine="llamacpp") == [(GGUF_REPO, ["tiny-q4-cpu", "tiny-q8-cpu"])]
    assert [r for r, _ in listed(license="apache-2.0")] == [GGUF_REPO, "org/model"]  # "Apache 2.0" is the same
    assert [r for r, _ in listed(license="mit")] == ["org/embedder"]
    assert [r for r, _ in listed(task="feature-extraction")] == ["org/embedder"]
    assert [r for r, _ in listed(search="EMBED")] == ["org/embedder"]
    assert [r for r, _ in listed(search="test-org")] == [GGUF_REPO]
    assert [r for r, _ in listed(accelerator="cpu", task="text-generation")] == [GGUF_REPO]
    assert [r for r, _ in listed(limit=2)] == REPOS[:2]
    assert listed(accelerator="neuron") == []


# -- deploying through the real client ------------------------------------------------------------------


def test_deploy_by_repo_id_takes_its_first_recipe(hf: HfApi, live_server: LiveServer) -> None:
    ep = hf.create_inference_endpoint_from_catalog(repo_id=GGUF_REPO, namespace=NS)
    assert isinstance(ep, InferenceEndpoint)
    assert re.fullmatch(r"tiny-gguf-[a-z0-9]{6}", ep.name)
    assert (ep.namespace, ep.repository, ep.framework, ep.task, ep.status) == (
        NS,
        GGUF_REPO,
        "llamacpp",
        "text-generation",
        "pending",
    )
    raw = ep.raw
    assert raw["type"] == "authenticated"
    assert raw["provider"] == {"vendor": "aws", "region": "us-east-1"}
    assert raw["compute"]["id"] == "aws-us-east-1-intel-spr-x2"
    assert (raw["compute"]["accelerator"], raw["compute"]["instanceType"], raw["compute"]["instanceSize"]) == (
        "cpu",
        "intel-spr",
        "x2",
    )
    scaling = raw["compute"]["scaling"]
    assert (scaling["minReplica"], scaling["maxReplica"], scaling["scaleToZeroTimeout"]) == (0, 2, 30)
    assert raw["model"]["image"] == {"llamacpp": {"modelPath": "tiny-q4_k_m.gguf", "ctxSize": 2048}}
    assert hf.get_inference_endpoint(ep.name, namespace=NS).raw == raw
    # The same checks and audit as POST /v2/endpoint: the Hub pinned the commit, and the create is logged.
    assert re.fullmatch(r"[0-9a-f]{40}", raw["status"]["resolvedRevision"])
    events = _get(live_server, f"/v2/endpoint/{NS}/{ep.name}/events")["items"]
    assert [e["action"] for e in events] == ["endpoint.create"]

    again = hf.create_inference_endpoint_from_catalog(repo_id=GGUF_REPO, namespace=NS)
    assert again.name != ep.name  # a second deploy of one model is a second endpoint


def test_deploy_by_repo_id_with_a_gguf_file_and_a_name(hf: HfApi, live_server: LiveServer) -> None:
    ep = hf.create_inference_endpoint_from_catalog(
        repo_id=GGUF_REPO, gguf_file="tiny-q8_0.gguf", accelerator="cpu", name="tiny-q8", namespace=NS
    )
    assert ep.name == "tiny-q8"
    assert ep.raw["model"]["image"] == {"llamacpp": {"modelPath": "tiny-q8_0.gguf"}}
    # Unpinned hardware: the cheapest row of the accelerator that holds the model; the recipe's default scaling.
    assert ep.raw["compute"]["id"] == _cheapest(live_server, GGUF_REPO, "cpu")
    scaling = ep.raw["compute"]["scaling"]
    assert (scaling["minReplica"], scaling["maxReplica"], scaling["scaleToZeroTimeout"]) == (0, 1, 15)


def test_deploy_by_recipe_id_with_the_real_client(hf: HfApi, live_server: LiveServer) -> None:
    ep = hf.create_inference_endpoint_from_catalog(recipe_id="model-vllm-gpu", name="from-recipe", namespace=NS)
    assert (ep.name, ep.repository, ep.revision, ep.task, ep.framework) == (
        "from-recipe",
        "org/model",
        "main",
        "text-generation",
        "pytorch",
    )
    raw = ep.raw
    assert raw["type"] == "private"
    assert raw["model"]["image"] == {"vLLM": {"maxModelLen": 1024}}
    scaling = raw["compute"]["scaling"]
    assert (scaling["minReplica"], scaling["maxReplica"], scaling["scaleToZeroTimeout"]) == (1, 1, None)
    # instanceType and instanceSize pinned without a region: the first such row of the hardware catalog.
    rows = [
        compute
        for vendor in _get(live_server, f"/v2/provider/{NS}")["vendors"]
        for region in vendor["regions"]
        for compute in region["computes"]
        if (compute["instanceType"], compute["instanceSize"]) == ("nvidia-l4", "x1")
    ]
    assert raw["compute"]["id"] == rows[0]["id"]

    tgi = hf.create_inference_endpoint_from_catalog(recipe_id="model-tgi-gpu", namespace=NS)
    assert re.fullmatch(r"model-[a-z0-9]{6}", tgi.name)
    assert tgi.raw["model"]["image"] == {"tgi": {}}
    assert tgi.raw["compute"]["id"] == _cheapest(live_server, "org/model", "gpu")


def test_namespace_defaults_to_the_callers(hf: HfApi) -> None:
    ep = hf.create_inference_endpoint_from_catalog(recipe_id="embedder-tei-cpu")  # namespace from whoami
    assert ep.namespace == NS
    assert ep.task == "feature-extraction"
    assert ep.raw["model"]["env"] == {"LOG_LEVEL": "debug"}
    assert ep.raw["model"]["image"] == {"tei": {}}


def test_refusals_reach_the_real_client(hf: HfApi) -> None:
    with pytest.raises(BadRequestError) as raised:
        hf.create_inference_endpoint_from_catalog(repo_id=GGUF_REPO, accelerator="gpu", namespace=NS)
    assert "accelerator: test-org/tiny-GGUF has no recipe for accelerator gpu" in str(raised.value)
    assert "tiny-q4-cpu: cpu, llamacpp, ggufFile tiny-q4_k_m.gguf" in str(raised.value)
    with pytest.raises(HfHubHTTPError) as missing:
        hf.create_inference_endpoint_from_catalog(repo_id="nobody/nothing", namespace=NS)
    assert missing.value.response.status_code == 404
    assert "GET /api/v1/catalog/list?search=nothing" in str(missing.value)
    hf.create_inference_endpoint_from_catalog(recipe_id="tiny-q8-cpu", name="taken", namespace=NS)
    with pytest.raises(HfHubHTTPError) as taken:
        hf.create_inference_endpoint_from_catalog(recipe_id="tiny-q8-cpu", name="taken", namespace=NS)
    assert taken.value.response.status_code == 409


# -- plain HTTP: legacy routes, access, errors ----------------------------------------------------------


def test_legacy_routes(client: TestClient) -> None:
    listed = client.get("/api/catalog/repo-list")
    assert listed.status_code == 200, listed.text
    RepoList.model_validate_json(listed.content, strict=True)
    assert listed.json() == {"models": REPOS}

    named = client.post(
        "/api/catalog/deploy",
        json={"namespace": NS, "repoId": GGUF_REPO, "endpointName": "legacy", "accelerator": "cpu"},
    )
    assert named.status_code == 200, named.text
    Deployed.model_validate_json(named.content, strict=True)
    endpoint = named.json()["endpoint"]
    assert (endpoint["name"], endpoint["model"]["repository"]) == ("legacy", GGUF_REPO)
    assert endpoint["model"]["image"] == {"llamacpp": {"modelPath": "tiny-q4_k_m.gguf", "ctxSize": 2048}}
    assert client.get(f"/v2/endpoint/{NS}/legacy").json() == endpoint

    unnamed = client.post("/api/catalog/deploy", json={"namespace": NS, "repoId": "org/embedder"})
    assert unnamed.status_code == 200, unnamed.text
    assert re.fullmatch(r"embedder-[a-z0-9]{6}", unnamed.json()["endpoint"]["name"])


def test_list_answers_the_documented_shape(client: TestClient) -> None:
    response = client.get("/api/v1/catalog/list", params={"engine": "VLLM"})  # engine names in any case
    assert response.status_code == 200, response.text
    CatalogList.model_validate_json(response.content, strict=True)
    assert response.json()["items"][0]["recipes"] == [
        {
            "publicId": "model-vllm-gpu",
            "accelerator": "gpu",
            "engineType": "vllm",
            "ggufFile": None,
            "revision": "main",
            # What a deploy of the recipe creates besides (the console's create form starts from it):
            "type": "private",
            "framework": "pytorch",
            "hardware": {"instanceType": "nvidia-l4", "instanceSize": "x1"},
            "scaling": {"minReplica": 1, "maxReplica": 1, "scaleToZeroTimeout": None},
            "env": {},
            "options": {"maxModelLen": 1024},
        }
    ]


def test_every_route_needs_a_token(client: TestClient) -> None:
    anonymous = {"Authorization": ""}
    for method, path, body in [
        ("GET", "/api/v1/catalog/list", None),
        ("GET", "/api/catalog/repo-list", None),
        ("POST", f"/api/v1/catalog/model/{GGUF_REPO}/deploy", {"namespace": NS}),
        ("POST", "/api/v1/catalog/recipe/tiny-q4-cpu/deploy", {"namespace": NS}),
        ("POST", "/api/catalog/deploy", {"namespace": NS, "repoId": GGUF_REPO}),
    ]:
        response = client.request(method, path, json=body, headers=anonymous)
        assert response.status_code == 401, (path, response.text)


def test_another_namespace_is_403(client: TestClient, alice: str) -> None:
    as_alice = {"Authorization": f"Bearer {alice}"}
    assert client.get("/api/v1/catalog/list", headers=as_alice).status_code == 200
    for path, body in [
        (f"/api/v1/catalog/model/{GGUF_REPO}/deploy", {"namespace": NS}),
        ("/api/v1/catalog/recipe/tiny-q4-cpu/deploy", {"namespace": NS}),
        ("/api/catalog/deploy", {"namespace": NS, "repoId": GGUF_REPO}),
        ("/api/v1/catalog/recipe/no-such-recipe/deploy", {"namespace": NS}),  # 403 before 404: nothing leaks
    ]:
        response = client.post(path, json=body, headers=as_alice)
        assert response.status_code == 403, (path, response.text)
        assert "not a member of namespace 'admin'" in response.json()["error"]
    own = client.post("/api/v1/catalog/recipe/embedder-tei-cpu/deploy", json={"namespace": "alice"}, headers=as_alice)
    assert own.status_code == 200, own.text
    assert own.json()["endpoint"]["status"]["createdBy"]["name"] == "alice"


def test_unknown_models_and_recipes_are_404(client: TestClient) -> None:
    for path, body in [
        ("/api/v1/catalog/model/nobody/nothing/deploy", {"namespace": NS}),
        ("/api/catalog/deploy", {"namespace": NS, "repoId": "nobody/nothing"}),
    ]:
        response = client.post(path, json=body)
        assert response.status_code == 404, response.text
        assert response.json()["error"].startswith("model nobody/nothing is not in this catalog")
        assert "GET /api/v1/catalog/list?search=nothing" in response.json()["error"]
    recipe = client.post("/api/v1/catalog/recipe/no-such-recipe/deploy", json={"namespace": NS})
    assert recipe.status_code == 404
    assert "recipe no-such-recipe is not in this catalog" in recipe.json()["error"]
    assert "GET /api/v1/catalog/list" in recipe.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (f"/api/v1/catalog/model/{GGUF_REPO}/deploy", {}, "namespace"),
        (f"/api/v1/catalog/model/{GGUF_REPO}/deploy", {"namespace": NS, "config": {"name": "Bad_Name"}}, "config.name"),
        (f"/api/v1/catalog/model/{GGUF_REPO}/deploy", {"namespace": NS, "accelerator": "tpu"}, "accelerator"),
        (f"/api/v1/catalog/model/{GGUF_REPO}/deploy", {"namespace": NS, "ggufFile": "nope.gguf"}, "ggufFile"),
        ("/api/v1/catalog/recipe/tiny-q4-cpu/deploy", {"namespace": NS, "config": {"name": "x" * 40}}, "config.name"),
        ("/api/catalog/deploy", {"namespace": NS}, "repoId"),
        ("/api/catalog/deploy", {"namespace": NS, "repoId": GGUF_REPO, "endpointName": "-no"}, "endpointName"),
    ],
)
def test_bad_bodies_name_the_field(client: TestClient, path: str, body: dict[str, Any], field: str) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 400, response.text
    assert field in [f["field"] for f in response.json()["fields"]]
    assert response.json()["error"].startswith(f"{field}: " if field == "ggufFile" else "invalid request: ")


def test_bad_filters_name_the_field(client: TestClient) -> None:
    for params, field in [
        ({"engine": "nope"}, "engine"),
        ({"accelerator": "tpu"}, "accelerator"),
        ({"limit": "0"}, "limit"),
    ]:
        response = client.get("/api/v1/catalog/list", params=params)
        assert response.status_code == 400, response.text
        assert field in [f["field"] for f in response.json()["fields"]]


# -- the catalog file -----------------------------------------------------------------------------------


def test_the_shipped_catalog_loads_against_the_shipped_engines() -> None:
    catalog = load_model_catalog(None, engines=load_engine_catalog(None))
    assert catalog.models
    ids = [r.public_id for m in catalog.models for r in m.recipes]
    assert len(ids) == len(set(ids))
    assert {r.accelerator.value for m in catalog.models for r in m.recipes} >= {"cpu", "gpu"}


GOOD_RECIPE = {"publicId": "a-cpu", "accelerator": "cpu", "engineType": "llamacpp"}


def _one(recipe: dict[str, Any] | None = None, **model: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"repoId": "a/b", "license": "mit", "task": "text-generation", "createdAt": "2026-01-01"}
    entry.update(recipes=[recipe or GOOD_RECIPE], **model)
    return {"models": [entry]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            _one({**GOOD_RECIPE, "engineType": "vlm"}),
            "models[0] (a/b): recipes[0].engineType: Input should be 'llamacpp', 'vllm'",
        ),
        (
            _one({**GOOD_RECIPE, "gpuCount": 1}),
            "models[0] (a/b): recipes[0].gpuCount: is not a field of the catalog",
        ),
        (
            {"models": [{k: v for k, v in _one()["models"][0].items() if k != "license"}]},
            "models[0] (a/b): license: is required",
        ),
        (_one(repoId="ab"), "models[0] (ab): repoId: repoId 'ab' must be 'author/model'"),
        (
            _one({**GOOD_RECIPE, "engineType": "tei", "ggufFile": "x.gguf"}),
            "recipes[0]: ggufFile is for engineType llamacpp, not tei",
        ),
        (
            _one({**GOOD_RECIPE, "scaling": {"minReplica": 2, "maxReplica": 1}}),
            "recipes[0].scaling: minReplica (2) is above maxReplica (1)",
        ),
        (
            _one({**GOOD_RECIPE, "scaling": {"minReplica": 1, "scaleToZeroTimeout": 5}}),
            "scaleToZeroTimeout needs minReplica = 0",
        ),
        (
            _one({**GOOD_RECIPE, "hardware": {"instanceSize": "x1"}}),
            "recipes[0].hardware: instanceSize needs instanceType",
        ),
        (
            {"models": [_one()["models"][0], {**_one()["models"][0], "repoId": "c/d"}]},
            "models[1] (c/d): recipes[0].publicId 'a-cpu' is already used by models[0] (a/b).recipes[0]",
        ),
        (
            {"models": [_one()["models"][0], {**_one()["models"][0], "repoId": "A/B", "recipes": []}]},
            "models[1] (A/B): recipes: List should have at least 1 item",
        ),
        (
            {"models": [_one()["models"][0], _one({**GOOD_RECIPE, "publicId": "other"})["models"][0]]},
            "models[1] (a/b): repoId repeats models[0]",
        ),
        (["not", "a", "mapping"], "Input should be a valid dictionary"),
    ],
)
def test_a_bad_catalog_names_the_entry_and_the_field(raw: Any, message: str) -> None:
    with pytest.raises(CatalogError) as raised:
        parse_model_catalog(raw, source="model catalog x.yaml")
    assert str(raised.value).startswith("model catalog x.yaml: ")
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        (
            {**GOOD_RECIPE, "engineType": "vllm"},
            "models[0] (a/b): recipes[0].engineType: vllm has no cpu image in the engine catalog (it runs on gpu)",
        ),
        ({**GOOD_RECIPE, "options": {"ctxSize": 1, "maxModelLen": 2}}, "options: maxModelLen not a knob of llamacpp"),
    ],
)
def test_recipes_must_run_on_the_engine_catalog(recipe: dict[str, Any], message: str) -> None:
    with pytest.raises(CatalogError, match=re.escape(message)):
        parse_model_catalog(_one(recipe), engines=load_engine_catalog(None))


def test_unreadable_files_say_so(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"cannot be read .*fix DAIS_MODEL_CATALOG"):
        load_model_catalog(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"broken\.yaml is not valid YAML"):
        load_model_catalog(broken)


def test_a_bad_catalog_stops_the_start(settings: Settings, db: sessionmaker[Session], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent(CATALOG).replace("engineType: tei", "engineType: teii"), encoding="utf-8")
    bad_settings = settings.model_copy(update={"model_catalog": bad})
    wanted = r"models\[1\] \(org/embedder\): recipes\[0\]\.engineType"
    with pytest.raises(CatalogError, match=wanted):
        build_state(bad_settings, sessions=db)


@pytest.mark.parametrize(
    ("repo_id", "name"),
    [
        ("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2-5-0-5b-instruct-abc123"),  # cut at a '-'
        ("org/Qwen2.5-0.5B-Instruct", "qwen2-5-0-5b-instruct-abc123"),  # 25 characters fit
        ("org/Qwen2.5-0.5B-Instruct-", "qwen2-5-0-5b-instruct-abc123"),
        ("org/abcdefghijklmnopqrstuvwxyz0123", "abcdefghijklmnopqrstuvwxy-abc123"),  # no '-' to cut at
        ("org/embedder", "embedder-abc123"),
        ("org/__", "endpoint-abc123"),
    ],
)
def test_default_names(repo_id: str, name: str) -> None:
    assert service.default_name(repo_id, "abc123") == name
    assert re.fullmatch(NAME_PATTERN, name)
