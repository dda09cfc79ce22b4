"""What the fuzzer (tests/api/test_fuzz.py) found, each pinned by a focused test."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.factories import endpoint_body
from tests.fixtures.hub import HubServer

NS = "admin"


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
