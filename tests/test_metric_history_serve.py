"""The embedded metric history end to end under `dais serve` (SQLite, the local runtime): a real engine process
serves requests through the gateway, the gateway and the controller write their samples, and the route shows the
requests, the tokens, the replica and the replica process's CPU and memory."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.factories import ADMIN_TOKEN, endpoint_body
from tests.fixtures.dais_serve import Serve, dais_serve
from tests.fixtures.hub import HubServer
from tests.fixtures.kube import wait_for
from tests.fixtures.models import tiny_llama_gguf
from tests.test_sqlite_smoke import LOCAL

CHAT = "dais-test/tiny-chat"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
REQUESTS = 5


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    models = tmp_path_factory.mktemp("models")
    with HubServer() as hub:
        gguf = tiny_llama_gguf(models / "tiny-chat.gguf")
        hub.add_model(CHAT, {"tiny-chat.gguf": gguf}, pipeline_tag="text-generation", library_name="gguf")
        with dais_serve(hub, tmp_path_factory.mktemp("home")) as running:
            yield running


def test_the_gateway_and_the_controller_write_what_the_route_shows(serve: Serve) -> None:
    api = httpx.Client(base_url=serve.url, headers=AUTH, timeout=30)
    body = endpoint_body("hist", type="public", **LOCAL)
    body["model"]["repository"] = CHAT
    assert api.post("/v2/endpoint/admin", json=body).status_code == 200, "created"

    def running() -> str | None:
        status = api.get("/v2/endpoint/admin/hist").json()["status"]
        return str(status["url"]) if status["state"] == "running" else None

    url = wait_for(running, timeout=120, what="the endpoint to run")
    started = datetime.now(UTC) - timedelta(seconds=10)
    chat = {"model": CHAT, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3}
    for _ in range(REQUESTS):
        assert httpx.post(f"{url}/v1/chat/completions", json=chat, timeout=60).status_code == 200

    def shown() -> dict[str, Any] | None:
        params = {"from": started.isoformat(), "to": (datetime.now(UTC) + timedelta(seconds=10)).isoformat()}
        answer = api.get("/v2/endpoint/admin/hist/metrics", params={**params, "step": "10s"})
        assert answer.status_code == 200, answer.text
        series = answer.json()["series"]
        served = sum(v or 0 for v in series["requests_2xx"]) * 10
        measured = any(v is not None for v in series["cpu_cores"])
        return series if served >= REQUESTS and measured else None

    series = wait_for(shown, timeout=60, what="the samples of the requests and of the replica's process")
    assert sum(v or 0 for v in series["requests_2xx"]) * 10 == REQUESTS
    assert sum(v or 0 for v in series["tokens_out"]) * 10 == 3 * REQUESTS
    assert max(v or 0 for v in series["replicas_ready"]) == 1.0
    assert max(v or 0 for v in series["memory_bytes"]) > 10 * 2**20, "the engine process's resident memory"
    assert all(v is None or v >= 0 for v in series["cpu_cores"])
    assert all(v is None for v in series["gpu_percent"]), "not measured on the local runtime"
    assert any(v is not None for v in series["latency_p50_ms"])
