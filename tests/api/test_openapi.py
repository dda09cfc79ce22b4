"""The OpenAPI document declares every response body, and the real answers match it: a client generated from the
document can rely on it, even where a handler writes pre-rendered bytes."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from pydantic import BaseModel

from api.endpoint.schemas import AuditPage, EndpointList, EndpointWithStatus, ScalingView
from api.hardware.schemas import Providers
from api.identity.schemas import (
    HubTokenState,
    OrgRead,
    TokenCreated,
    TokenList,
    TokenRevoked,
    UserRead,
    WhoAmI,
)
from api.recommendation.schemas import Recommendation
from api.schemas import Empty, ErrorBody
from tests.factories import endpoint_body
from tests.fixtures.hub import HubServer

NS = "admin"


def test_every_operation_documents_its_success_and_error_bodies(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    undocumented = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            responses = operation["responses"]
            bodies = list(responses.get("200", {}).get("content", {}).values())
            schema = bodies[0].get("schema", {}) if bodies else {}
            if "$ref" not in schema and schema.get("type") != "string":
                undocumented.append(f"{where}: {schema}")
            for status in ("401", "500", "503"):  # every route authenticates and uses the database
                if status not in responses:
                    undocumented.append(f"{where}: no {status}")
            for status, response in responses.items():
                error = response.get("content", {}).get("application/json", {}).get("schema", {})
                if status >= "400" and error.get("$ref") != "#/components/schemas/ErrorBody":
                    undocumented.append(f"{where}: {status} is not the error shape ({error})")
    assert not undocumented
    # Bad input answers 400 (api.validation), never FastAPI's 422: the document must not promise one.
    assert "HTTPValidationError" not in document["components"]["schemas"]


def _conforms(response: Any, model: type[BaseModel]) -> Any:
    assert response.status_code == 200, response.text
    model.model_validate_json(response.content, strict=True)
    return response.json()


def test_the_real_answers_match_the_documented_models(client: TestClient, hub: HubServer) -> None:
    created = _conforms(client.post(f"/v2/endpoint/{NS}", json=endpoint_body("shape")), EndpointWithStatus)
    assert created["status"]["state"] == "pending"
    _conforms(client.get(f"/v2/endpoint/{NS}/shape"), EndpointWithStatus)
    _conforms(
        client.put(f"/v2/endpoint/{NS}/shape", json={"compute": {"scaling": {"maxReplica": 2}}}), EndpointWithStatus
    )
    _conforms(client.post(f"/v2/endpoint/{NS}/shape/pause"), EndpointWithStatus)
    _conforms(client.post(f"/v2/endpoint/{NS}/shape/resume"), EndpointWithStatus)
    _conforms(client.post(f"/v2/endpoint/{NS}/shape/scale-to-zero"), EndpointWithStatus)
    assert len(_conforms(client.get(f"/v2/endpoint/{NS}"), EndpointList)["items"]) == 1
    _conforms(client.get(f"/v2/endpoint/{NS}/shape/scaling"), ScalingView)
    assert _conforms(client.get(f"/v2/endpoint/{NS}/shape/events"), AuditPage)["items"]
    _conforms(client.get(f"/v2/provider/{NS}"), Providers)
    _conforms(client.get("/v2/recommendation", params={"repository": "org/model"}), Recommendation)
    _conforms(client.get("/api/whoami-v2"), WhoAmI)
    _conforms(client.post("/api/users", json={"name": "shape-user"}), UserRead)
    _conforms(client.post("/api/orgs", json={"name": "shape-org", "members": ["shape-user"]}), OrgRead)
    token = _conforms(client.post("/api/tokens", json={"name": "shape", "endpoint": f"{NS}/shape"}), TokenCreated)
    _conforms(client.get("/api/tokens"), TokenList)
    _conforms(client.delete(f"/api/tokens/{token['id']}"), TokenRevoked)
    _conforms(client.put(f"/api/namespaces/{NS}/hub-token", json={"token": "hf_abcdefgh"}), HubTokenState)
    _conforms(client.get(f"/api/namespaces/{NS}/hub-token"), HubTokenState)
    _conforms(client.delete(f"/api/namespaces/{NS}/hub-token"), HubTokenState)
    _conforms(client.delete(f"/v2/endpoint/{NS}/shape"), Empty)
    missing = client.get(f"/v2/endpoint/{NS}/shape")
    assert missing.status_code == 404
    ErrorBody.model_validate_json(missing.content, strict=True)
