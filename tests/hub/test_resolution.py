"""Create and update ask the Hub (the local one, tests/fixtures/hub.py) through huggingface_hub: every rule of
the Hub issue, through the API."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.bootstrap import ensure_admin
from api.main import build_state, create_app
from core.db.models import Endpoint
from core.settings import Settings
from tests.conftest import Clock
from tests.factories import ADMIN_TOKEN, endpoint_body
from tests.fixtures.hub import HubServer, gguf_bytes, safetensors_bytes

NS = "admin"
SMALL = {"config.json": b"{}", "model.safetensors": safetensors_bytes({"w": ("F32", [256, 256])})}


def header_only_safetensors(parameters: int, dtype: str = "BF16") -> bytes:
    """A safetensors header claiming ``parameters`` weights, without the weights (the Hub reads only headers)."""
    size = {"BF16": 2, "F16": 2, "F32": 4, "I8": 1}[dtype]
    header = json.dumps({"w": {"dtype": dtype, "shape": [parameters], "data_offsets": [0, parameters * size]}})
    raw = header.encode() + b" " * (-len(header) % 8)
    return struct.pack("<Q", len(raw)) + raw


def body(repository: str, name: str = "ep", **model: Any) -> dict[str, Any]:
    created = endpoint_body(name)
    created["model"].update(repository=repository, **model)
    return created


def create(client: TestClient, repository: str, **model: Any) -> Any:
    return client.post(f"/v2/endpoint/{NS}", json=body(repository, **model))


def stored(db: sessionmaker[Session], name: str = "ep") -> Endpoint:
    with db() as session:
        found = session.scalar(select(Endpoint).where(Endpoint.name == name))
    assert found is not None
    return found


def count(db: sessionmaker[Session]) -> int:
    with db() as session:
        return session.scalar(select(func.count()).select_from(Endpoint)) or 0


@pytest.fixture
def client_with(settings: Settings, db: sessionmaker[Session], clock: Clock) -> Iterator[Callable[..., TestClient]]:
    """An API client whose Hub settings differ (``offline=``, ``retry_deadline_seconds=``)."""
    opened: list[TestClient] = []

    def make(**hub: Any) -> TestClient:
        changed = settings.model_copy(update={"hub": settings.hub.model_copy(update=hub)})
        ensure_admin(db, changed, clock())
        client = TestClient(
            create_app(changed, state=build_state(changed, sessions=db, clock=clock)),
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        opened.append(client.__enter__())
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def test_the_revision_is_pinned_to_its_commit_and_shown(client: TestClient, hub: HubServer) -> None:
    main_sha = hub.add_model("org/rev", SMALL, pipeline_tag="text-generation", branches={"dev": SMALL | {"x": b"1"}})
    dev_sha = next(ref.target_commit for ref in _refs(hub, "org/rev") if ref.name == "dev")
    ep = create(client, "org/rev@dev").json()
    assert ep["status"]["requestedRevision"] == "dev"
    assert ep["status"]["resolvedRevision"] == dev_sha
    assert dev_sha != main_sha
    latest = client.post(f"/v2/endpoint/{NS}", json=body("org/rev@latest", name="ep2")).json()
    assert (latest["model"]["revision"], latest["status"]["resolvedRevision"]) == ("main", main_sha)
    # A branch moving on later does not move a deployed endpoint: the sha stays until the spec changes.
    hub.add_model("org/rev", SMALL | {"new": b"2"}, pipeline_tag="text-generation")
    again = client.get(f"/v2/endpoint/{NS}/ep2").json()
    assert again["status"]["resolvedRevision"] == main_sha


def _refs(hub: HubServer, repo: str) -> list[Any]:
    from huggingface_hub import HfApi

    return list(HfApi(endpoint=hub.url, token=False).list_repo_refs(repo).branches)


def test_an_unknown_model_or_revision_is_a_400_naming_it(
    client: TestClient, hub: HubServer, db: sessionmaker[Session]
) -> None:
    missing = create(client, "org/missing")
    assert missing.status_code == 400
    assert "model org/missing not found on the Hub" in missing.json()["error"]
    hub.add_model("org/rev", SMALL, pipeline_tag="text-generation")
    bad = create(client, "org/rev", revision="nope")
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("model.revision: revision 'nope' not found in model org/rev")
    assert count(db) == 0


def test_a_revision_with_an_unsafe_character_names_it(client: TestClient) -> None:
    response = create(client, "org/rev", revision="main;rm")
    assert response.status_code == 400
    assert "contains ';'" in response.json()["error"]


def test_without_a_task_the_pipeline_tag_is_used(client: TestClient, hub: HubServer, db: sessionmaker[Session]) -> None:
    hub.add_model("org/embedder2", SMALL, pipeline_tag="sentence-similarity")
    response = create(client, "org/embedder2", task=None, image={"tei": {}})
    assert response.status_code == 200, response.text
    assert response.json()["model"]["task"] == "sentence-similarity"
    assert stored(db).resolution is not None
    assert stored(db).resolution["task"] == "sentence-similarity"  # type: ignore[index]


def test_a_gguf_only_repo_runs_on_llamacpp_with_one_file(
    client: TestClient, hub: HubServer, db: sessionmaker[Session]
) -> None:
    tensors = {"token_embd.weight": [64, 32]}
    hub.add_model(
        "org/gguf",
        {"m-Q8_0.gguf": gguf_bytes(tensors), "m-Q4_K_M.gguf": gguf_bytes(tensors), "README.md": b"#"},
        pipeline_tag="text-generation",
    )
    response = create(client, "org/gguf", image={"huggingface": {}})
    assert response.status_code == 200, response.text
    resolution = stored(db).resolution or {}
    assert (resolution["engine"], resolution["modelPath"]) == ("llamacpp", "m-Q4_K_M.gguf")


@pytest.mark.parametrize(
    ("repository", "files", "task", "image", "error"),
    [
        (
            "org/chat",
            SMALL,
            "text-generation",
            {"tei": {}},
            "model.image: TEI serves embeddings, reranking and classification, and model org/chat is text-generation",
        ),
        (
            "org/chat",
            SMALL,
            "text-generation",
            {"llamacpp": {}},
            "model.image: llama.cpp serves GGUF files and model org/chat has none",
        ),
        (
            "org/gguf",
            {"a.gguf": gguf_bytes({"t": [8, 8]})},
            "text-generation",
            {"llamacpp": {"modelPath": "b.gguf"}},
            "model.image.llamacpp.modelPath: model org/gguf has no file 'b.gguf': name one of its GGUF files (a.gguf)",
        ),
    ],
)
def test_engine_and_model_mismatches_are_400(
    client: TestClient,
    hub: HubServer,
    repository: str,
    files: dict[str, bytes],
    task: str,
    image: dict[str, Any],
    error: str,
) -> None:
    hub.add_model(repository, files, pipeline_tag=task)
    response = create(client, repository, task=None, image=image)
    assert response.status_code == 400
    assert response.json()["error"].startswith(error)


def test_a_model_too_big_for_the_hardware_names_the_cheapest_rows_that_fit(
    client: TestClient, hub: HubServer, db: sessionmaker[Session]
) -> None:
    hub.add_model(
        "org/big", {"model.safetensors": header_only_safetensors(30_000_000_000)}, pipeline_tag="text-generation"
    )
    response = create(client, "org/big")  # 60 GB of bf16 weights on one 24 GB L4
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith(
        "compute.instanceType: model org/big needs about 69.8 GiB (55.9 GiB of weights from safetensors, plus 25% "
        "headroom) but aws-us-east-1-nvidia-l4-x1 has 24.0 GiB: choose "
    )
    assert "gpu/nvidia-a100/x1 ($2.5/h), gpu/nvidia-l4/x4 ($3.2/h), gpu/nvidia-a10g/x4 ($4/h)" in error
    assert count(db) == 0
    fine = client.post(
        f"/v2/endpoint/{NS}",
        json=body("org/big") | {"compute": {**body("org/big")["compute"], "instanceType": "nvidia-a100"}},
    )
    assert fine.status_code == 200, fine.text


def test_recommendation_lists_fitting_rows_cheapest_first(client: TestClient, hub: HubServer) -> None:
    hub.add_model(
        "org/big", {"model.safetensors": header_only_safetensors(30_000_000_000)}, pipeline_tag="text-generation"
    )
    response = client.get("/v2/recommendation", params={"repository": "org/big", "vendor": "aws"})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["weightBytes"] == 60_000_000_000
    assert result["neededBytes"] == 75_000_000_000
    prices = [row["pricePerHour"] for row in result["items"]]
    assert prices == sorted(prices)
    assert result["items"][0]["id"] == "aws-us-east-1-nvidia-a100-x1"
    assert all(row["memoryBytes"] >= result["neededBytes"] for row in result["items"])
    assert client.get("/v2/recommendation", params={"repository": "org/nothing"}).status_code == 404
    assert client.get("/v2/recommendation", params={"repository": "a/b/c"}).status_code == 400


def test_gated_models_need_a_token_with_access(client: TestClient, hub: HubServer, alice: str) -> None:
    hub.add_model("org/gated", SMALL, pipeline_tag="text-generation", gated=True, tokens={"hf_good_token"})
    refused = create(client, "org/gated")
    assert refused.status_code == 400
    assert "model org/gated is gated: accept its licence on the Hub" in refused.json()["error"]
    # The endpoint's own HF_TOKEN secret…
    own = client.post(f"/v2/endpoint/{NS}", json=body("org/gated", name="own", secrets={"HF_TOKEN": "hf_good_token"}))
    assert own.status_code == 200, own.text
    # …or the namespace's Hub token, set once, never shown again.
    assert client.put(f"/api/namespaces/{NS}/hub-token", json={"token": "hf_good_token"}).status_code == 200
    state = client.get(f"/api/namespaces/{NS}/hub-token").json()
    assert state["set"] is True
    assert "hf_good_token" not in json.dumps(state)
    assert create(client, "org/gated").status_code == 200
    # A wrong token is refused with the same advice.
    assert client.put(f"/api/namespaces/{NS}/hub-token", json={"token": "hf_wrong_one"}).status_code == 200
    wrong = client.post(f"/v2/endpoint/{NS}", json=body("org/gated", name="wrong"))
    assert wrong.status_code == 400
    assert "gated" in wrong.json()["error"]
    # Others cannot set or read a namespace's token.
    as_alice = {"Authorization": f"Bearer {alice}"}
    assert (
        client.put(f"/api/namespaces/{NS}/hub-token", json={"token": "hf_x1234567"}, headers=as_alice).status_code
        == 403
    )
    assert client.delete(f"/api/namespaces/{NS}/hub-token").json()["set"] is False


def test_private_models_read_as_not_found_without_a_token(client: TestClient, hub: HubServer) -> None:
    hub.add_model("org/private", SMALL, pipeline_tag="text-generation", private=True, tokens={"hf_mine"})
    hidden = create(client, "org/private")
    assert hidden.status_code == 400
    assert (
        "model org/private not found on the Hub (if it is private, set the namespace's Hub token"
        in (hidden.json()["error"])
    )
    assert create(client, "org/private", secrets={"HF_TOKEN": "hf_mine"}).status_code == 200


def test_transient_hub_errors_are_retried(client: TestClient, hub: HubServer) -> None:
    hub.add_model("org/flaky", SMALL, pipeline_tag="text-generation")
    hub.fail_next(2, status=503, path_contains="/api/models/org/flaky")
    response = create(client, "org/flaky")
    assert response.status_code == 200, response.text
    answered = [r for r in hub.requests if "/api/models/org/flaky" in r[1]]
    assert [r[3] for r in answered] == [503, 503, 200]


def test_when_the_hub_is_down_a_pinned_sha_still_deploys(
    client_with: Callable[..., TestClient], hub: HubServer, db: sessionmaker[Session]
) -> None:
    sha = hub.add_model("org/down", SMALL, pipeline_tag="text-generation")
    strict = client_with(retry_deadline_seconds=0.3)
    hub.fail_next(1000, status=503)
    pinned = strict.post(f"/v2/endpoint/{NS}", json=body("org/down", name="pinned", revision=sha))
    assert pinned.status_code == 200, pinned.text
    assert pinned.json()["status"]["resolvedRevision"] == sha
    branch = strict.post(f"/v2/endpoint/{NS}", json=body("org/down", name="branch"))
    assert branch.status_code == 503
    assert "the Hub is unreachable" in branch.json()["error"]
    assert "pin model.revision to a commit sha" in branch.json()["error"]
    lenient = client_with(retry_deadline_seconds=0.3, offline="lenient")
    accepted = lenient.post(f"/v2/endpoint/{NS}", json=body("org/down", name="lenient"))
    assert accepted.status_code == 200, accepted.text
    assert (stored(db, "lenient").resolution or {})["verified"] is False


def test_updates_ask_the_hub_again_only_when_the_model_or_hardware_changes(
    client: TestClient, hub: HubServer, db: sessionmaker[Session]
) -> None:
    first = hub.add_model("org/rev", SMALL, pipeline_tag="text-generation")
    assert create(client, "org/rev").status_code == 200
    hub.clear_requests()
    scaled = client.put(f"/v2/endpoint/{NS}/ep", json={"compute": {"scaling": {"maxReplica": 2, "minReplica": 1}}})
    assert scaled.status_code == 200, scaled.text
    assert hub.requests == []
    second = hub.add_model("org/rev", SMALL | {"more": b"x"}, pipeline_tag="text-generation")
    moved = client.put(f"/v2/endpoint/{NS}/ep", json={"model": {"revision": second}})
    assert moved.status_code == 200, moved.text
    assert moved.json()["status"]["resolvedRevision"] == second != first


def test_many_creates_of_one_model_ask_the_hub_once(client_with: Callable[..., TestClient], hub: HubServer) -> None:
    hub.add_model("org/popular", SMALL, pipeline_tag="text-generation")
    cached = client_with(cache_seconds=60)
    hub.clear_requests()
    for i in range(3):
        assert cached.post(f"/v2/endpoint/{NS}", json=body("org/popular", name=f"p{i}")).status_code == 200
    assert len([r for r in hub.requests if r[1].startswith("/api/models/org/popular")]) == 1


def test_a_namespace_token_is_read_once_per_ttl_and_forgotten_when_set() -> None:
    from core.domain.catalog import load_hardware_catalog
    from hub.client import HubClient
    from hub.resolver import HubResolver

    resolver = HubResolver(
        HubClient(endpoint=None, timeout=1, deadline=1, cache_seconds=0),
        load_hardware_catalog(None, default_quota=16),
        headroom=0.25,
        lenient=False,
        token_ttl_s=60,
    )
    reads: list[str] = []

    def load() -> bytes | None:
        reads.append("read")
        return b"sealed"

    assert resolver.namespace_token("acme", load) == b"sealed"
    assert resolver.namespace_token("acme", load) == b"sealed"
    assert len(reads) == 1  # the second create of the namespace skips the database
    resolver.forget_token("acme")  # PUT/DELETE .../hub-token in this process
    resolver.namespace_token("acme", load)
    assert len(reads) == 2
