"""GET /v2/endpoint/{ns}/{name}/metrics behind a real gateway: a real Prometheus range query returns the figures the
gateway served, the embedded store the gateway writes gives the same within one step, and `dais endpoints metrics`
prints them."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.analytics.service import EndpointRef, deployment
from api.main import build_state, create_app
from controller.desired import EndpointView, object_name
from core.db.metric_samples import RAW
from core.db.models import Endpoint
from core.prometheus import PrometheusClient
from core.settings import MetricHistorySettings, PrometheusSettings
from tests.factories import ADMIN_TOKEN
from tests.fixtures.engine import FakeEngine
from tests.fixtures.kube import wait_for
from tests.fixtures.postgres import free_port
from tests.fixtures.prometheus import LoadExporter, prometheus_server
from tests.gateway.conftest import Running

REQUESTS = 20
ATTEMPTS = 4  # bursts tried until Prometheus has scraped both sides of one inside its 10-s step
LABEL = "admin/mh-prom"


def at(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _scraped_around(prometheus: str, query: str, *, start: int, before: int, after: int) -> bool:
    """Whether Prometheus's raw samples inside the step (start, start + RAW] hold both counts."""
    answer = httpx.get(
        f"{prometheus}/api/v1/query", params={"query": f"{query}[{RAW}s]", "time": str(start + RAW)}, timeout=5
    ).json()
    values = {float(v) for series in answer["data"]["result"] for _, v in series["values"]}
    return before in values and after in values


def test_prometheus_and_the_embedded_store_show_what_the_gateway_served(
    gateway: Running, engine: FakeEngine, load_exporter: LoadExporter
) -> None:
    url = gateway.serve("mh-prom", engine)
    with gateway.live.sessions() as session:
        ident = session.scalar(select(Endpoint.id).where(Endpoint.name == "mh-prom", Endpoint.deleted_at.is_(None)))
    assert ident is not None
    namespace = gateway.live.settings.controller.namespace
    pod = f"ep-mh-prom-{ident[:12]}-5d8f9c7b4-x2x9z"  # a pod of the endpoint's Deployment, as its ReplicaSet names it
    load_exporter.set(pod, namespace=namespace, cpu_percent=50, limit_cores=2)
    targets = [gateway.internal_url.removeprefix("http://"), f"127.0.0.1:{load_exporter.port}"]
    try:
        with prometheus_server(targets) as prometheus, PrometheusClient(prometheus, timeout=5) as client:
            # A first request makes the series; once Prometheus has scraped it, every later request is an increase.
            httpx.post(f"{url}/v1/chat/completions", json={"messages": [], "max_tokens": 2})
            query = f'llm_requests_total{{endpoint="{LABEL}", code="2xx"}}'
            wait_for(lambda: client.vector(query), timeout=30, what="Prometheus to scrape the gateway")
            served = 1
            for _ in range(ATTEMPTS):
                start = (math.floor(time.time()) // RAW + 1) * RAW  # the burst goes in the 10 s after this
                wait_for(lambda s=start: time.time() > s + 0.5, timeout=RAW + 1, what="the next 10-s boundary")
                try:  # a scrape inside the step before the burst (its count is the rate's first sample)
                    wait_for(
                        lambda s=start: any(at > s for _, at in client.vector(f"timestamp({query})")) or None,
                        timeout=3,
                        what="a scrape inside the step",
                    )
                except TimeoutError:
                    continue
                for _ in range(REQUESTS):
                    answer = httpx.post(f"{url}/v1/chat/completions", json={"messages": [], "max_tokens": 2})
                    assert answer.status_code == 200
                assert time.time() < start + RAW, "the burst fits in one step"
                served += REQUESTS
                # Prometheus's rate over a step sees the burst's whole increase only if it scraped inside that
                # step both before and after it; a loaded machine can delay scrapes past the step's end, and
                # then the burst is measured again in the next step (the span below starts at the last one).
                wait_for(
                    lambda n=served: client.vector(f"{query} == {n}") or None,
                    timeout=2 * RAW,
                    what="Prometheus to scrape the burst",
                )
                if _scraped_around(prometheus, query, start=start, before=served - REQUESTS, after=served):
                    break
            else:
                raise AssertionError(f"Prometheus did not scrape inside one step around a burst in {ATTEMPTS} tries")
            end = start + 3 * RAW
            wait_for(lambda: time.time() > end + 3, timeout=4 * RAW + 5, what="the samples after the burst")

            settings = gateway.live.settings.model_copy(
                update={
                    "prometheus": PrometheusSettings(url=prometheus, timeout_seconds=5),
                    "metric_history": MetricHistorySettings(prometheus_window_seconds=1),
                }
            )
            app = create_app(settings, state=build_state(settings, sessions=gateway.live.sessions), access_log=False)
            with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as api:
                span = {"from": at(start + RAW), "to": at(end), "step": "10s"}
                scraped = api.get("/v2/endpoint/admin/mh-prom/metrics", params=span)
                stored = api.get("/v2/endpoint/admin/mh-prom/metrics", params={**span, "source": "embedded"})
    finally:
        load_exporter.remove(pod)
    assert scraped.status_code == 200, scraped.text
    assert stored.status_code == 200, stored.text
    prom, embedded = scraped.json(), stored.json()
    assert (prom["source"], embedded["source"]) == ("prometheus", "embedded")
    assert prom["timestamps"] == embedded["timestamps"]
    assert len(prom["timestamps"]) == 3

    # The embedded store counts exactly: the burst, in the step it was served in.
    served = embedded["series"]["requests_2xx"]
    assert served == [REQUESTS / RAW, 0.0, 0.0]
    assert embedded["series"]["tokens_out"] == [2 * REQUESTS / RAW, 0.0, 0.0]
    assert embedded["series"]["requests_5xx"] == [0.0, 0.0, 0.0]
    assert embedded["series"]["pending"] == [0.0, 0.0, 0.0]
    # Prometheus's rates extrapolate from its scrapes: the same total, within one step of it.
    rates = [value or 0.0 for value in prom["series"]["requests_2xx"]]
    assert sum(rates) * RAW == pytest.approx(REQUESTS, rel=0.3)
    assert rates[2] == 0.0
    tokens = [value or 0.0 for value in prom["series"]["tokens_out"]]
    assert sum(tokens) * RAW == pytest.approx(2 * REQUESTS, rel=0.3)
    # The latency percentiles come from the same histogram buckets: both have them for the burst's step. Only their
    # presence and range are asserted: Prometheus's rate() extrapolates each bucket series on its own and stops
    # extrapolating a counter where it would reach zero, so over 20 requests a bucket that was empty before the
    # burst is scaled differently from its neighbours, depending on where the scrapes fell; with exponentially
    # spaced buckets that moved a percentile up to 4x in 2 of 8 loaded runs. The embedded store counts exactly.
    for name in ("latency_p50_ms", "latency_p90_ms", "latency_p99_ms"):
        ours, theirs = embedded["series"][name][0], prom["series"][name][0]
        assert ours is not None
        assert theirs is not None
        assert 0 < ours < 1000
        assert 0 < theirs < 1000
    assert embedded["series"]["latency_p50_ms"][1] is None, "no request in that step"
    # Hardware comes from cAdvisor's series of the endpoint's pods (the local runtime's controller writes it to the
    # embedded store; no controller runs here).
    assert prom["series"]["cpu_cores"][-1] == pytest.approx(1.0, abs=0.1)
    assert embedded["series"]["cpu_cores"] == [None, None, None]
    assert prom["series"]["replicas_ready"] == [None, None, None], "no kube-state-metrics here"

    # The command line prints the embedded figures as a table (the live API has no Prometheus).
    printed = subprocess.run(
        [
            sys.executable,
            "-m",
            "dais",
            "endpoints",
            "metrics",
            LABEL,
            "--from",
            at(start + RAW),
            "--to",
            at(end),
            "--step",
            "10s",
            "--series",
            "requests_2xx,latency_p50_ms,tokens_out",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "DAIS_TOKEN": ADMIN_TOKEN, "DAIS_URL": gateway.live.url},
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    header, first, *rest = printed.stdout.splitlines()
    assert header.split() == ["time", "requests_2xx", "latency_p50_ms", "tokens_out"]
    assert first.split()[0] == at(start + RAW)
    assert first.split()[1:] == ["2", first.split()[2], "4"]
    assert [row.split()[1:] for row in rest] == [["0", "-", "0"], ["0", "-", "0"]]
    assert "embedded" in printed.stderr


def test_the_deployment_the_queries_find_pods_by_is_the_controllers() -> None:
    ref = EndpointRef("ns", "chat", "0123456789abcdef0123456789abcdef", datetime.now(UTC))
    view = EndpointView(id=ref.id, namespace="ns", name="chat", spec={}, generation=1, revision="r", replicas=1)
    assert deployment(ref) == object_name(view)


def test_an_unreachable_prometheus_is_a_503(gateway: Running) -> None:
    settings = gateway.live.settings.model_copy(
        update={"prometheus": PrometheusSettings(url=f"http://127.0.0.1:{free_port()}", timeout_seconds=1)}
    )
    gateway.create("mh-down")
    app = create_app(settings, state=build_state(settings, sessions=gateway.live.sessions), access_log=False)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as api:
        answer = api.get("/v2/endpoint/admin/mh-down/metrics", params={"series": "requests_2xx"})
    assert answer.status_code == 503
    assert "did not answer" in answer.json()["error"]
