"""Operations: health, readiness, metrics, request ids, structured logs, error shapes."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from fastapi.testclient import TestClient

from api.main import build_state, create_app
from core.logs import JsonFormatter
from tests.conftest import make_settings
from tests.factories import ADMIN_TOKEN, endpoint_body


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_readyz_fails_when_the_database_is_unreachable(tmp_path: Path) -> None:
    from tests.fixtures.postgres import free_port

    settings = make_settings(f"postgresql://nobody@127.0.0.1:{free_port()}/none", tmp_path)
    with TestClient(create_app(settings, state=build_state(settings))) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert "database unreachable" in response.json()["error"]


def test_a_request_that_finds_no_free_database_connection_is_answered_503_with_retry_after(
    pg_url: str, tmp_path: Path
) -> None:
    settings = make_settings(pg_url, tmp_path, db_pool_size=1, db_pool_timeout_seconds=0.2)
    state = build_state(settings)
    from api.bootstrap import ensure_admin

    ensure_admin(state.sessions, settings, state.clock())
    engine = state.sessions.kw["bind"]
    with TestClient(create_app(settings, state=state)) as client:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert client.get("/v2/endpoint/admin", headers=auth).status_code == 200
        with engine.connect():  # the pool's one connection (no overflow at size 1), held elsewhere
            response = client.get("/v2/endpoint/admin", headers=auth)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert "DAIS_DB_POOL_SIZE" in response.json()["error"]
        assert client.get("/v2/endpoint/admin", headers=auth).status_code == 200


def test_request_id_is_taken_or_generated_and_echoed(client: TestClient) -> None:
    assert client.get("/healthz", headers={"X-Request-Id": "abc-1"}).headers["x-request-id"] == "abc-1"
    assert client.get("/healthz", headers={"X-Amzn-Trace-Id": "Root=1-2-3"}).headers["x-request-id"] == "Root=1-2-3"
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32
    assert client.get("/healthz", headers={"X-Request-Id": "bad id\n"}).headers["x-request-id"] != "bad id\n"


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    client.post("/v2/endpoint/admin", json=endpoint_body())
    client.get("/v2/endpoint/admin/my-ep")
    client.get("/v2/endpoint/admin/nope")
    text = client.get("/metrics").text
    assert 'dais_api_requests_total{method="GET",route="/v2/endpoint/{namespace}/{name}",status="200"}' in text
    assert 'dais_api_requests_total{method="GET",route="/v2/endpoint/{namespace}/{name}",status="404"}' in text
    assert 'dais_api_request_duration_seconds_bucket{le="0.005",method="POST",route="/v2/endpoint/{namespace}"}' in text
    assert "/v2/endpoint/admin/my-ep" not in text, "labels carry templates, never raw paths"


def test_logs_are_json_lines_with_the_request_id(client: TestClient) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("dais.api.access")
    access.addHandler(handler)
    previous = access.level
    access.setLevel(logging.INFO)
    try:
        client.get("/v2/endpoint/admin", headers={"X-Request-Id": "log-me"})
    finally:
        access.removeHandler(handler)
        access.setLevel(previous)
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["requestId"] == "log-me"
    assert line["status"] == 200
    assert line["route"] == "/v2/endpoint/{namespace}"


def test_unknown_routes_and_methods_use_the_error_shape(client: TestClient) -> None:
    missing = client.get("/v2/nothing/here")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Not Found", "statusCode": 404}
    wrong = client.patch("/v2/endpoint/admin/x")
    assert wrong.status_code == 405
    assert wrong.json()["statusCode"] == 405
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "PUT", "DELETE"}
