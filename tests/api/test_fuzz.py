"""Schemathesis generates requests from our own OpenAPI document: none may answer 5xx, and every answer matches
the body the document declares for its status.

Driven through plain Hypothesis (``as_strategy``) since schemathesis' pytest plugin does not run on pytest 9.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from tests.factories import ADMIN_TOKEN, endpoint_body

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_no_operation_answers_5xx(client: TestClient) -> None:
    # Something to find, update and delete, so generated paths can hit real rows too.
    assert client.post("/v2/endpoint/admin", json=endpoint_body("fuzz")).status_code == 200
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def no_server_error(case: Any) -> None:
            case.call_and_validate(headers=AUTH, checks=[not_a_server_error, response_schema_conformance])

        no_server_error()
