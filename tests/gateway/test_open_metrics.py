"""GET /v2/endpoint/{ns}/{name}/open-metrics: one endpoint's gateway figures, from this process (the embedded
gateway) or summed over gateway replicas by a real Prometheus."""

from __future__ import annotations

import httpx
import pytest

from api.endpoint import openmetrics
from api.errors import ServiceUnavailable
from tests.fixtures.engine import FakeEngine
from tests.fixtures.kube import wait_for
from tests.fixtures.postgres import free_port
from tests.fixtures.prometheus import prometheus_server
from tests.gateway.conftest import Running


def test_open_metrics_shows_only_that_endpoints_figures(gateway: Running, engine: FakeEngine) -> None:
    for name in ("om-one", "om-two"):
        gateway.serve(name, engine)
    for _ in range(3):
        httpx.post(f"{gateway.url}/admin/om-one/v1/chat/completions", json={"messages": [], "max_tokens": 2})
    httpx.get(f"{gateway.url}/admin/om-two/health")
    answer = gateway.api.get("/v2/endpoint/admin/om-one/open-metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    text = answer.text
    assert 'llm_requests_total{code="2xx",endpoint="admin/om-one"} 3.0' in text
    assert 'llm_completion_tokens_total{endpoint="admin/om-one"} 6.0' in text
    assert "om-two" not in text
    assert text.rstrip().endswith("# EOF")
    assert gateway.api.get("/v2/endpoint/admin/nope/open-metrics").status_code == 404


def test_open_metrics_from_prometheus_sums_the_gateway_replicas(gateway: Running, engine: FakeEngine) -> None:
    gateway.serve("om-prom", engine)
    for _ in range(2):
        httpx.get(f"{gateway.url}/admin/om-prom/info")
    internal = gateway.internal_url.removeprefix("http://")
    with prometheus_server([internal]) as url:

        def scraped() -> str | None:
            text = openmetrics.render(openmetrics.from_prometheus(url, "admin/om-prom", timeout=5)).decode()
            return text if 'llm_requests_total{code="2xx",endpoint="admin/om-prom"} 2.0' in text else None

        text = wait_for(scraped, timeout=30, what="Prometheus to scrape the gateway")
    assert "llm_internal_request_duration_ms_bucket" in text
    assert "instance=" not in text  # summed over replicas


def test_an_unreachable_prometheus_is_a_503() -> None:
    with pytest.raises(ServiceUnavailable, match="did not answer"):
        openmetrics.from_prometheus(f"http://127.0.0.1:{free_port()}", "a/b", timeout=1)
