"""Rules needing context (hardware rows, quota, ceiling), and that bad input stores nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.db.models import AuditEvent, Endpoint
from tests.factories import endpoint_body

NS = "admin"


def body_with(
    name: str = "my-ep", *, size: str = "x1", max_replica: int = 1, itype: str = "nvidia-l4"
) -> dict[str, Any]:
    body = endpoint_body(name)
    body["compute"].update(instanceType=itype, instanceSize=size, scaling={"minReplica": 0, "maxReplica": max_replica})
    return body


def counts(db: sessionmaker[Session]) -> tuple[int, int]:
    with db() as session:
        return (
            session.scalar(select(func.count()).select_from(Endpoint)) or 0,
            session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.endpoint_id.is_not(None)))
            or 0,
        )


@pytest.mark.parametrize(
    ("mutate", "field", "hint"),
    [
        (lambda b: b["compute"].update(instanceType="nvidia-zz9"), "compute", "choose one of"),
        (lambda b: b["provider"].update(region="mars-1"), "compute", "GET /v2/provider"),
        (lambda b: b["compute"].update(instanceType="intel-icl", accelerator="cpu"), "compute", "deprecated"),
        (lambda b: b["compute"]["scaling"].update(maxReplica=65), "compute.scaling.maxReplica", "ceiling"),
        (lambda b: b["model"].update(repository="a/b/c"), "model", "Hub model id"),
        (lambda b: b.pop("provider"), "provider", "is required"),
        (
            lambda b: (
                b.update(compute={**b["compute"], "accelerator": "cpu", "instanceType": "intel-spr"})
                or b["model"].update(image={"tgi": {}})
            ),
            "model.image",
            "engine tgi has no cpu image in the engine catalog",
        ),
        (
            lambda b: (
                b["compute"].update(instanceSize="x4") or b["model"].update(image={"vLLM": {"dataParallelSize": 3}})
            ),
            "model.image",
            "tensorParallelSize (1) × dataParallelSize (3) must equal the instance's 4 GPUs",
        ),
        (lambda b: b["model"].update(image={"llamacpp": {}}), "model.image", "llama.cpp serves GGUF files"),
    ],
)
def test_bad_create_is_400_and_stores_nothing(
    client: TestClient, db: sessionmaker[Session], mutate: Any, field: str, hint: str
) -> None:
    body = endpoint_body()
    mutate(body)
    response = client.post(f"/v2/endpoint/{NS}", json=body)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["statusCode"] == 400
    assert f"{field}" in payload["error"]
    assert hint in payload["error"]
    assert counts(db) == (0, 0)


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post(f"/v2/endpoint/{NS}", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["statusCode"] == 400


def test_bad_update_is_400_and_changes_nothing(client: TestClient, db: sessionmaker[Session]) -> None:
    assert client.post(f"/v2/endpoint/{NS}", json=endpoint_body()).status_code == 200
    before = client.get(f"/v2/endpoint/{NS}/my-ep").json()
    response = client.put(f"/v2/endpoint/{NS}/my-ep", json={"compute": {"scaling": {"minReplica": 5}}})
    assert response.status_code == 400
    assert "minReplica (5) is above maxReplica (1)" in response.json()["error"]
    assert client.get(f"/v2/endpoint/{NS}/my-ep").json() == before
    assert counts(db) == (1, 1)


def test_update_cannot_rename(client: TestClient) -> None:
    client.post(f"/v2/endpoint/{NS}", json=endpoint_body())
    response = client.put(f"/v2/endpoint/{NS}/my-ep", json={"name": "other", "tags": ["t"]})
    assert response.status_code == 200
    assert response.json()["name"] == "my-ep"


def test_quota_holds_on_create(client: TestClient) -> None:
    # nvidia-l4 quota: 16 accelerators per namespace (default); x4 × maxReplica 4 = 16 fits exactly.
    assert client.post(f"/v2/endpoint/{NS}", json=body_with("a", size="x4", max_replica=4)).status_code == 200
    refused = client.post(f"/v2/endpoint/{NS}", json=body_with("b", size="x1", max_replica=1))
    assert refused.status_code == 400
    assert "would use 17 of 16" in refused.json()["error"]
    assert client.post(f"/v2/endpoint/{NS}", json=body_with("c", itype="nvidia-t4")).status_code == 200


def test_quota_holds_on_update_and_resume_and_paused_do_not_count(client: TestClient) -> None:
    client.post(f"/v2/endpoint/{NS}", json=body_with("a", size="x4", max_replica=3))  # 12
    client.post(f"/v2/endpoint/{NS}", json=body_with("b", size="x1", max_replica=4))  # 16
    grow = client.put(f"/v2/endpoint/{NS}/b", json={"compute": {"scaling": {"maxReplica": 5}}})
    assert grow.status_code == 400
    assert "quota" in grow.json()["error"]
    assert client.post(f"/v2/endpoint/{NS}/a/pause").status_code == 200  # frees 12
    assert client.put(f"/v2/endpoint/{NS}/b", json={"compute": {"scaling": {"maxReplica": 10}}}).status_code == 200
    resume = client.post(f"/v2/endpoint/{NS}/a/resume")
    assert resume.status_code == 400
    assert "quota" in resume.json()["error"]
    # scaled-to-zero endpoints still count
    assert client.post(f"/v2/endpoint/{NS}/b/scale-to-zero").status_code == 200
    assert client.post(f"/v2/endpoint/{NS}/a/resume").status_code == 400


def test_provider_quota_reflects_pause(client: TestClient) -> None:
    client.post(f"/v2/endpoint/{NS}", json=body_with("a", size="x4", max_replica=2))

    def used() -> int:
        hardware = client.get(f"/v2/provider/{NS}").json()
        rows = [c for v in hardware["vendors"] for r in v["regions"] for c in r["computes"]]
        return next(c for c in rows if c["id"] == "aws-us-east-1-nvidia-l4-x1")["quota"]["usedAccelerators"]

    assert used() == 8
    client.post(f"/v2/endpoint/{NS}/a/pause")
    assert used() == 0


def test_paused_endpoints_may_grow_beyond_quota_until_resumed(client: TestClient) -> None:
    client.post(f"/v2/endpoint/{NS}", json=body_with("a", size="x4", max_replica=4))  # 16 of 16
    client.post(f"/v2/endpoint/{NS}", json=body_with("b", size="x1", max_replica=1))  # refused, not created
    client.post(f"/v2/endpoint/{NS}/a/pause")
    assert client.post(f"/v2/endpoint/{NS}", json=body_with("b", size="x1", max_replica=1)).status_code == 200
    assert client.put(f"/v2/endpoint/{NS}/a", json={"compute": {"scaling": {"maxReplica": 8}}}).status_code == 200
    resume = client.post(f"/v2/endpoint/{NS}/a/resume")
    assert resume.status_code == 400
    assert "would use 33 of 16" in resume.json()["error"]


def test_nul_characters_are_refused_naming_the_field(client: TestClient, db: sessionmaker[Session]) -> None:
    body = endpoint_body()
    body["model"]["env"] = {"A": "x\x00y"}
    response = client.post(f"/v2/endpoint/{NS}", json=body)
    assert response.status_code == 400
    assert "model.env.A contains a NUL character" in response.json()["error"]
    token = client.post("/api/tokens", json={"name": "\x00"})
    assert token.status_code == 400
    assert "name contains a NUL character" in token.json()["error"]
    path = client.get("/v2/endpoint/%00")  # admins reach every namespace, so this one reaches the database
    assert path.status_code == 400
    assert "NUL" in path.json()["error"]
    assert counts(db) == (0, 0)


def test_endpoints_on_hardware_deprecated_later_stay_editable(
    client: TestClient, settings: Any, db: sessionmaker[Session], tmp_path: Any
) -> None:
    """Deprecating a row stops new endpoints on it, not edits or resumes of those already there."""
    from api.main import build_state, create_app
    from tests.factories import ADMIN_TOKEN

    assert client.post(f"/v2/endpoint/{NS}", json=body_with("old", itype="nvidia-t4")).status_code == 200
    catalog = (Path(__file__).parents[2] / "core/domain/hardware.yaml").read_text()
    deprecated = catalog.replace(
        "architecture: Nvidia T4\n", "architecture: Nvidia T4\n            status: deprecated\n"
    )
    assert deprecated != catalog
    (tmp_path / "hardware.yaml").write_text(deprecated)
    later = settings.model_copy(update={"hardware_catalog": tmp_path / "hardware.yaml"})
    with TestClient(
        create_app(later, state=build_state(later, sessions=db)), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as after:
        assert after.put(f"/v2/endpoint/{NS}/old", json={"tags": ["still-here"]}).status_code == 200
        assert after.post(f"/v2/endpoint/{NS}/old/pause").status_code == 200
        assert after.post(f"/v2/endpoint/{NS}/old/resume").status_code == 200
        refused = after.post(f"/v2/endpoint/{NS}", json=body_with("new", itype="nvidia-t4"))
        assert refused.status_code == 400
        assert "deprecated" in refused.json()["error"]
