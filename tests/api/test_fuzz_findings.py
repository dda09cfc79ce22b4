"""What the fuzzer (tests/api/test_fuzz.py) found, each pinned by a focused test."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.factories import endpoint_body
from tests.fixtures.hub import HubServer

NS = "admin"


def test_a_namespace_hub_token_a_header_cannot_carry_is_refused(client: TestClient, hub: HubServer) -> None:
    """It was stored, and every later create in the namespace crashed sending it to the Hub (500)."""
    refused = client.put(f"/api/namespaces/{NS}/hub-token", json={"token": "hf_\u00fe\u00fe\u00fe\u00fe\u00fe\u00fe"})
    assert refused.status_code == 400
    assert refused.json()["fields"][0]["field"] == "token"
    assert "printable ASCII" in refused.json()["error"]
    assert client.post(f"/v2/endpoint/{NS}", json=endpoint_body("after")).status_code == 200


def test_an_hf_token_secret_a_header_cannot_carry_is_refused(client: TestClient, hub: HubServer) -> None:
    """The endpoint's own HF_TOKEN goes to the Hub in a header too: it crashed the create (500)."""
    body = endpoint_body("own-token")
    body["model"]["secrets"] = {"HF_TOKEN": "hf_\u00fe\u00fe\u00fe\u00fe"}
    refused = client.post(f"/v2/endpoint/{NS}", json=body)
    assert refused.status_code == 400
    assert refused.json()["fields"][0]["field"] == "model.secrets"
    assert "HF_TOKEN" in refused.json()["error"]
    body["model"]["secrets"] = {"HF_TOKEN": "hf_good_token", "OTHER": "caf\u00e9 au lait"}  # other secrets: any text
    assert client.post(f"/v2/endpoint/{NS}", json=body).status_code == 200


def _properties(document: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    name = schema["$ref"].rsplit("/", 1)[1]
    return set(document["components"]["schemas"][name]["properties"])


def test_an_endpoint_answer_carries_no_field_the_document_leaves_out(client: TestClient, hub: HubServer) -> None:
    """The answer's ``compute.id`` (the hardware row) was missing from the document."""
    answer = client.post(f"/v2/endpoint/{NS}", json=endpoint_body("shape")).json()
    document = client.get("/openapi.json").json()
    endpoint = document["components"]["schemas"]["EndpointWithStatus"]
    assert set(answer) <= set(endpoint["properties"])
    for part in ("compute", "status", "provider", "model"):
        assert set(answer[part]) <= _properties(document, endpoint["properties"][part]), part
    assert answer["compute"]["id"] == "aws-us-east-1-nvidia-l4-x1"
