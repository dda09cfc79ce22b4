"""The /v2 endpoint routes on a real PostgreSQL, each test rolled back."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import endpoint_body

NS = "admin"
CLIENT_KEYS = ["name", "type", "healthRoute"]
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$")


def create(client: TestClient, body: dict[str, Any] | None = None, ns: str = NS) -> dict[str, Any]:
    response = client.post(f"/v2/endpoint/{ns}", json=body or endpoint_body())
    assert response.status_code == 200, response.text
    return response.json()


def test_create_returns_every_key_the_client_reads(client: TestClient) -> None:
    ep = create(client)
    for key in CLIENT_KEYS:
        assert key in ep
    assert ep["healthRoute"] == "/health"
    for key in ("repository", "framework", "revision", "task"):
        assert key in ep["model"]
    assert ep["status"]["state"] == "pending"
    assert TIME.match(ep["status"]["createdAt"])
    assert TIME.match(ep["status"]["updatedAt"])
    assert "url" not in ep["status"]
    assert ep["compute"]["id"] == "aws-us-east-1-nvidia-l4-x1"


def test_get_and_list(client: TestClient) -> None:
    create(client, endpoint_body("one"))
    create(client, endpoint_body("two"))
    got = client.get(f"/v2/endpoint/{NS}/one")
    assert got.status_code == 200
    assert got.json()["name"] == "one"
    assert got.headers["etag"] == '"1"'
    names = [e["name"] for e in client.get(f"/v2/endpoint/{NS}").json()["items"]]
    assert names == ["one", "two"]


def test_empty_namespace_lists_nothing(client: TestClient) -> None:
    assert client.get(f"/v2/endpoint/{NS}").json()["items"] == []


def test_unknown_endpoint_is_404_in_error_shape(client: TestClient) -> None:
    response = client.get(f"/v2/endpoint/{NS}/nope")
    assert response.status_code == 404
    assert response.json() == {"error": "endpoint admin/nope not found", "statusCode": 404}


def test_duplicate_name_is_409(client: TestClient) -> None:
    create(client)
    response = client.post(f"/v2/endpoint/{NS}", json=endpoint_body())
    assert response.status_code == 409
    assert "already exists" in response.json()["error"]


def test_update_deep_merges_and_bumps_generation(client: TestClient) -> None:
    create(client, endpoint_body(model={**endpoint_body()["model"], "env": {"A": "1"}}))
    response = client.put(
        f"/v2/endpoint/{NS}/my-ep",
        json={
            "compute": {"instanceSize": "x4", "scaling": {"maxReplica": 2, "minReplica": 1}},
            "model": {"env": {"B": "2"}},
        },
    )
    assert response.status_code == 200, response.text
    ep = response.json()
    assert ep["compute"]["instanceSize"] == "x4"
    assert ep["compute"]["instanceType"] == "nvidia-l4"  # merged, not replaced
    assert ep["compute"]["scaling"]["scaleToZeroTimeout"] is None
    assert ep["model"]["env"] == {"B": "2"}  # maps replace wholesale
    assert ep["model"]["repository"] == "openai-community/gpt2"
    assert ep["status"]["generation"] == 2
    assert response.headers["etag"] == '"2"'


def test_empty_update_changes_nothing(client: TestClient) -> None:
    create(client)
    ep = client.put(f"/v2/endpoint/{NS}/my-ep", json={}).json()
    assert ep["status"]["generation"] == 1
    assert [e["action"] for e in client.get(f"/v2/endpoint/{NS}/my-ep/events").json()["items"]] == ["endpoint.create"]


def test_image_is_replaced_as_a_whole(client: TestClient) -> None:
    create(client)
    ep = client.put(
        f"/v2/endpoint/{NS}/my-ep",
        json={"model": {"image": {"vLLM": {"url": "vllm/vllm-openai:v0.23.0", "port": 8000, "tensorParallelSize": 1}}}},
    ).json()
    assert ep["model"]["image"] == {"vLLM": {"url": "vllm/vllm-openai:v0.23.0", "port": 8000, "tensorParallelSize": 1}}


def test_if_match_refuses_a_stale_generation(client: TestClient) -> None:
    create(client)
    stale = client.put(f"/v2/endpoint/{NS}/my-ep", json={"tags": ["x"]}, headers={"If-Match": '"7"'})
    assert stale.status_code == 412
    assert "GET it again" in stale.json()["error"]
    fresh = client.put(f"/v2/endpoint/{NS}/my-ep", json={"tags": ["x"]}, headers={"If-Match": '"1"'})
    assert fresh.status_code == 200
    assert fresh.json()["tags"] == ["x"]


def test_secrets_are_never_returned_and_survive_round_trips(client: TestClient) -> None:
    body = endpoint_body()
    body["model"]["secrets"] = {"API_KEY": "s3cr3t"}
    body["model"]["image"] = {
        "custom": {"url": "ghcr.io/x/y:1", "credentials": {"username": "u", "password": "pw-value"}}
    }
    ep = create(client, body)
    text = client.get(f"/v2/endpoint/{NS}/my-ep").text
    assert "s3cr3t" not in text
    assert "pw-value" not in text
    assert ep["model"]["secrets"] == {"API_KEY": "**redacted**"}
    # Sending back what GET returned keeps the stored values rather than storing the placeholder.
    again = client.put(
        f"/v2/endpoint/{NS}/my-ep", json={"model": {"secrets": ep["model"]["secrets"], "env": {"X": "1"}}}
    )
    assert again.status_code == 200
    events = client.get(f"/v2/endpoint/{NS}/my-ep/events").json()["items"]
    assert all("s3cr3t" not in str(e) and "pw-value" not in str(e) for e in events)
    # Had the placeholder been stored, the diff would show model.secrets too.
    assert events[0]["diff"] == [{"path": "model.env.X", "old": None, "new": "1"}]


def test_delete_then_404_and_name_reusable(client: TestClient) -> None:
    create(client)
    assert client.delete(f"/v2/endpoint/{NS}/my-ep").status_code == 200
    assert client.get(f"/v2/endpoint/{NS}/my-ep").status_code == 404
    assert client.get(f"/v2/endpoint/{NS}").json()["items"] == []
    create(client)


def test_pause_resume_scale_to_zero(client: TestClient) -> None:
    create(client)
    already = client.post(f"/v2/endpoint/{NS}/my-ep/resume")
    assert already.status_code == 400
    assert "already running" in already.json()["error"]
    assert client.post(f"/v2/endpoint/{NS}/my-ep/pause").json()["status"]["state"] == "paused"
    assert client.post(f"/v2/endpoint/{NS}/my-ep/resume").json()["status"]["state"] == "pending"
    assert client.post(f"/v2/endpoint/{NS}/my-ep/scale-to-zero").json()["status"]["state"] == "scaledToZero"
    assert client.post(f"/v2/endpoint/{NS}/my-ep/resume").json()["status"]["state"] == "pending"
    actions = [e["action"] for e in client.get(f"/v2/endpoint/{NS}/my-ep/events").json()["items"]]
    assert actions == [
        "endpoint.resume",
        "endpoint.scale_to_zero",
        "endpoint.resume",
        "endpoint.pause",
        "endpoint.create",
    ]


def test_events_are_paginated_newest_first(client: TestClient) -> None:
    create(client)
    for i in range(4):
        client.put(f"/v2/endpoint/{NS}/my-ep", json={"tags": [str(i)]})
    first = client.get(f"/v2/endpoint/{NS}/my-ep/events", params={"limit": 3}).json()
    assert [e["diff"][0]["new"] for e in first["items"]] == [["3"], ["2"], ["1"]]
    second = client.get(f"/v2/endpoint/{NS}/my-ep/events", params={"limit": 3, "before": first["next"]}).json()
    assert [e["action"] for e in second["items"]] == ["endpoint.update", "endpoint.create"]
    assert second["next"] is None


def test_events_carry_request_id_and_source(client: TestClient) -> None:
    client.post(f"/v2/endpoint/{NS}", json=endpoint_body(), headers={"X-Amzn-Trace-Id": "trace-123"})
    event = client.get(f"/v2/endpoint/{NS}/my-ep/events").json()["items"][0]
    assert event["requestId"] == "trace-123"
    assert event["actor"] == "admin"
    assert event["sourceAddress"] == "testclient"


@pytest.mark.parametrize("kind", ["public", "authenticated", "private", "protected"])
def test_every_type_is_accepted_and_echoed(client: TestClient, kind: str) -> None:
    assert create(client, endpoint_body(type=kind))["type"] == kind


def test_repository_with_revision_is_split(client: TestClient) -> None:
    body = endpoint_body()
    body["model"]["repository"] = "org/model@latest"
    ep = create(client, body)
    assert ep["model"]["repository"] == "org/model"
    assert ep["model"]["revision"] == "main"


def test_unknown_fields_are_ignored(client: TestClient) -> None:
    body = endpoint_body(accountId=None, somethingNew={"x": 1})
    body["compute"]["unheardOf"] = True
    ep = create(client, body)
    assert "somethingNew" not in ep


def test_hardware_lists_quota_use(client: TestClient) -> None:
    create(
        client,
        endpoint_body(compute={**endpoint_body()["compute"], "scaling": {"minReplica": 1, "maxReplica": 3}}),
    )
    hardware = client.get(f"/v2/provider/{NS}").json()
    computes = {c["id"]: c for v in hardware["vendors"] for r in v["regions"] for c in r["computes"]}
    l4 = computes["aws-us-east-1-nvidia-l4-x1"]
    for key in (
        "id",
        "accelerator",
        "instanceType",
        "instanceSize",
        "architecture",
        "numAccelerators",
        "memoryGb",
        "pricePerHour",
        "status",
    ):
        assert key in l4
    assert l4["quota"]["usedAccelerators"] == 3
    assert computes["aws-us-east-1-nvidia-l4-x4"]["quota"]["usedAccelerators"] == 3  # per type
    assert computes["aws-us-east-1-nvidia-t4-x1"]["quota"]["usedAccelerators"] == 0
