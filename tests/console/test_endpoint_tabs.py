"""The endpoint page's Analytics, Logs and Scaling tabs in a real browser, on an endpoint with real traffic: a tiny
GGUF chat model on the local runtime, chatted with through the gateway."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import Page, Request, expect

from core.replica_logs import LogWriter
from tests.console.conftest import api, shoot, sign_in
from tests.console.test_console import create_body
from tests.factories import ADMIN_TOKEN
from tests.fixtures.browser import ARTIFACTS
from tests.fixtures.dais_serve import Serve
from tests.fixtures.kube import wait_for

STARTED = "dais.engine serving dais-test/tiny-chat"  # the engine's line once its model is loaded


@dataclass
class Running:
    name: str
    replica: str
    log: Path  # the replica's log file (the local runtime's)

    def path(self, tail: str = "") -> str:
        return f"/v2/endpoint/admin/{self.name}{tail}"


@pytest.fixture(scope="module")
def running(serve: Serve) -> Iterator[Running]:
    """One endpoint, running, that has answered a few chat requests through the gateway."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    with api(serve) as client:
        assert client.post("/v2/endpoint/admin", json=create_body(name)).status_code == 200
        endpoint = wait_for(
            lambda: (
                (found := client.get(f"/v2/endpoint/admin/{name}").json())["status"]["state"] == "running" and found
            ),
            timeout=180,
            what="the endpoint running",
        )
        for _ in range(3):
            answer = httpx.post(
                f"{endpoint['status']['url']}/v1/chat/completions",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                json={"model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8},
                timeout=120,
            )
            assert answer.status_code == 200, answer.text
        (replica,) = client.get(f"/v2/endpoint/admin/{name}/logs").json()["replicas"]
        (log,) = (serve.home / "logs").glob(f"*/{replica['id']}.log")
        yield Running(name, replica["id"], log)
        client.delete(f"/v2/endpoint/admin/{name}")


def open_tab(page: Page, serve: Serve, running: Running, tab: str) -> None:
    sign_in(page, serve)
    page.goto(f"{serve.url}/#/e/admin/{running.name}/{tab}")
    expect(page.locator(".tabs [aria-current=page]")).to_have_text(tab.capitalize())


def write_line(running: Running, stream: str, line: str) -> None:
    """A line in the replica's log, as the local runtime writes what the engine prints."""
    writer = LogWriter(running.log)
    writer.write(stream, line)
    writer.close()


def test_the_logs_tab_shows_the_replicas_lines_follows_them_as_text_and_downloads_them(
    serve: Serve, running: Running, page: Page
) -> None:
    open_tab(page, serve, running, "logs")
    lines = page.get_by_role("list", name="Log lines")
    expect(lines).to_contain_text(STARTED, timeout=15_000)
    expect(lines.locator("li.stderr").first).to_contain_text("stderr")  # the engine logs to stderr, marked so
    expect(page.get_by_label("Replica")).to_contain_text(f"{running.replica}: running since")
    expect(page.get_by_text("Lines from the local runtime's files")).to_be_visible()

    # Following: a line the replica writes now appears without a reload, and a script tag in it is only text.
    page.get_by_label("Follow").check()
    expect(page.get_by_role("status").filter(has_text="following")).to_be_visible()
    marker = f"hello from the console follower {uuid.uuid4().hex[:6]}"
    write_line(running, "stdout", marker)
    write_line(running, "stderr", "<script>alert(1)</script><img src=x onerror=alert(2)>")
    expect(lines.locator("li").filter(has_text=marker)).to_have_count(1)
    expect(lines.locator("li").filter(has_text=marker)).not_to_have_class("stderr")
    expect(lines).to_contain_text("<script>alert(1)</script><img src=x onerror=alert(2)>")
    assert lines.locator("script, img").count() == 0
    assert page.dialogs == []  # type: ignore[attr-defined]
    shoot(page, "logs")

    # Download: the shown lines as a text file.
    with page.expect_download() as started:
        page.get_by_role("link", name="Download").click()
    download = started.value
    assert download.suggested_filename == f"{running.name}-logs.txt"
    text = Path(download.path()).read_text()
    assert STARTED in text
    assert f"{running.replica} stdout: {marker}" in text
    assert "<script>alert(1)</script>" in text

    # Search (on the server) and the replica picker narrow the lines; unchecking Follow stops following.
    page.get_by_label("Search").fill("console follower")
    expect(lines.locator("li")).to_have_count(1)
    expect(lines).to_contain_text(marker)
    page.get_by_label("Replica").select_option(running.replica)
    expect(lines).to_contain_text(marker)
    page.get_by_label("Follow").uncheck()
    expect(page.get_by_role("status").filter(has_text="following")).to_have_count(0)
    page.get_by_label("Search").fill("no line holds this")
    expect(page.get_by_text("No line contains that text.")).to_be_visible()
    assert page.dialogs == []  # type: ignore[attr-defined]


def metrics_query(request: Request) -> dict[str, Any]:
    query = {k: v[0] for k, v in parse_qs(urlparse(request.url).query).items()}
    span = datetime.fromisoformat(query["to"]) - datetime.fromisoformat(query["from"])
    return {**query, "span": span.total_seconds()}


def is_metrics(request: Request) -> bool:
    return "/metrics?" in request.url


def test_the_analytics_tab_charts_the_traffic_with_a_range_zoom_and_refresh(
    serve: Serve, running: Running, page: Page
) -> None:
    with api(serve) as client:

        def served() -> bool:
            series = client.get(running.path("/metrics")).json()["series"]
            return any(series["requests_2xx"]) and any(v is not None for v in series["latency_p50_ms"])

        wait_for(served, timeout=60, what="the chat requests in the metric history")  # sampled every 10 s
    with page.expect_request(is_metrics) as asked:
        open_tab(page, serve, running, "analytics")
    first = metrics_query(asked.value)
    assert abs(first["span"] - 3600) < 5  # the last hour by default
    assert "series" not in first  # every series in one request
    charts = page.locator(".chart")
    expect(charts.first.locator("canvas")).to_have_count(1)
    assert charts.count() >= 6
    for title, labels in {
        "Requests by status": ["2xx", "4xx", "5xx", "failures"],
        "Latency": ["p50", "p90", "p99"],
        "Pending and held requests": ["pending", "held"],
        "Replicas: ready against desired": ["ready", "desired"],
        "CPU per replica": ["CPU"],
        "Memory per replica": ["memory"],
    }.items():
        chart = charts.filter(has=page.get_by_role("heading", name=title, exact=True))
        expect(chart.locator("canvas")).to_have_count(1)
        for label in labels:
            expect(chart.locator(".u-legend")).to_contain_text(label)
    shoot(page, "analytics")

    # Dragging across a chart zooms: the server is asked for that stretch only; Reset zoom goes back.
    def drag(start: float, end: float) -> dict[str, Any]:
        box = charts.first.locator(".u-over").bounding_box()
        assert box is not None
        middle = box["y"] + box["height"] / 2
        with page.expect_request(is_metrics) as asked:
            page.mouse.move(box["x"] + box["width"] * start, middle)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * (start + end) / 2, middle, steps=5)
            page.mouse.move(box["x"] + box["width"] * end, middle, steps=5)
            page.mouse.up()
        return metrics_query(asked.value)

    assert 0.4 * 3600 < drag(0.5, 1.05)["span"] < 0.55 * 3600  # beyond the plot: up to its last point
    expect(page.get_by_text("Zoomed to")).to_be_visible()
    expect(charts.first.locator("canvas")).to_have_count(1)
    with page.expect_request(is_metrics) as asked:
        page.get_by_role("button", name="Reset zoom").click()
    assert abs(metrics_query(asked.value)["span"] - 3600) < 5
    expect(page.get_by_text("Zoomed to")).to_have_count(0)
    # Before the endpoint existed there is no figure: the tab says so rather than drawing empty charts.
    assert 0.2 * 3600 < drag(0.02, 0.3)["span"] < 0.35 * 3600
    expect(page.get_by_text("No figures for this range yet")).to_be_visible()
    expect(charts).to_have_count(0)
    with page.expect_request(is_metrics):
        page.get_by_role("button", name="Reset zoom").click()
    expect(charts.first.locator("canvas")).to_have_count(1)

    # The range picker asks again for that range; 24 h is the benchmark's case: its time from asking to drawn.
    with page.expect_request(is_metrics) as asked:
        page.get_by_label("Time range").select_option(label="Last 6 hours")
    assert abs(metrics_query(asked.value)["span"] - 6 * 3600) < 5
    before = page.evaluate("() => performance.getEntriesByName('dais:analytics').length")
    with page.expect_request(is_metrics) as asked:
        page.get_by_label("Time range").select_option(label="Last 24 hours")
    assert abs(metrics_query(asked.value)["span"] - 86400) < 5
    page.wait_for_function("n => performance.getEntriesByName('dais:analytics').length > n", arg=before)
    took = page.evaluate("() => performance.getEntriesByName('dais:analytics').at(-1).duration")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "analytics-24h.json").write_text(json.dumps({"render_ms": round(took, 1)}))
    print(f"analytics, 24 h: {took:.1f} ms from asking to the last chart drawn")

    # Auto-refresh asks again by itself.
    with page.expect_request(is_metrics):
        page.get_by_label("Time range").select_option(label="Last hour")
    charts.first.locator("canvas").wait_for()
    page.get_by_label("Auto-refresh every 15 s").check()
    with page.expect_request(is_metrics, timeout=30_000) as asked:
        pass
    assert abs(metrics_query(asked.value)["span"] - 3600) < 5

    # At 390 px the charts shrink to fit: nothing scrolls sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_function("() => document.documentElement.scrollWidth <= 390")
    assert charts.first.locator("canvas").bounding_box()["width"] <= 390  # type: ignore[index]
    shoot(page, "analytics-390")
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_the_scaling_tab_lists_the_decisions_with_their_reasons_and_the_policy(
    serve: Serve, running: Running, page: Page
) -> None:
    with api(serve) as client:
        decisions = wait_for(
            lambda: client.get(running.path("/scaling")).json()["decisions"],
            timeout=60,
            what="the autoscaler's first decision",
        )
    open_tab(page, serve, running, "scaling")
    listed = page.locator(".decisions li")
    expect(listed.first).to_contain_text(decisions[0]["reason"])
    assert listed.count() >= len(decisions)
    policy = page.locator(".panel").filter(has=page.get_by_role("heading", name="Policy in force"))
    expect(policy).to_contain_text("1 to 1")
    expect(policy).to_contain_text("hardware use above 80%")
    chart = page.locator(".chart").filter(has=page.get_by_role("heading", name="Desired against ready"))
    expect(chart.locator("canvas")).to_have_count(1)
    expect(chart.locator(".u-legend")).to_contain_text("desired")
    expect(chart.locator(".u-legend")).to_contain_text("ready")
    listed.first.get_by_text("Inputs").click()
    expect(listed.first.locator("dl")).to_contain_text("ready")
    shoot(page, "scaling")
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_function("() => document.documentElement.scrollWidth <= 390")
