"""How fast the web console is for a person: the list page with 1,000 endpoints, in a real Chromium.

Run from the repository root: ``.venv/bin/python benchmarks/console.py``. Needs the PostgreSQL server binaries
and Chromium (``make system-deps``).

What it does: starts a throw-away PostgreSQL and ``dais api`` (no controller: the endpoints stay pending, which
is all the list needs), creates 1,000 endpoints in one namespace through the API, then opens the console's
list page in headless Chromium (Playwright), signed in, with an empty cache, several times, and reports:

- time to interactive: from the navigation's start until the first page of rows (100, by name; "Show more"
  brings the next) is in the page and the main thread has been idle (``requestIdleCallback``), median and worst
  of the rounds (goal ≤ 1.5 s);
- bytes transferred for that load (the page, its modules and styles, the API answers);
- the analytics tab for 24 h: one endpoint given 26 h of the embedded store's samples (as the gateway and the
  controller write them, rolled up as the controller does), the tab opened and switched to "Last 24 hours",
  the time from its request to the last chart drawn (the tab's own performance measure), median and worst
  (goal ≤ 500 ms).

Stdout: exactly one JSON object. Progress goes to stderr. Everything started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy import select, update  # noqa: E402

import migrations  # noqa: E402
from benchmarks.api import ADMIN_TOKEN, NAME_FORMAT, NS_FORMAT, api_server, seed  # noqa: E402
from core.db.metric_samples import maintain  # noqa: E402
from core.db.models import Endpoint  # noqa: E402
from core.db.session import make_engine, make_sessionmaker  # noqa: E402
from tests.factories import add_standard_models  # noqa: E402
from tests.fixtures.browser import chromium  # noqa: E402
from tests.fixtures.hub import HubServer  # noqa: E402
from tests.fixtures.metric_history import fill_history  # noqa: E402
from tests.fixtures.postgres import create_database, postgres_server  # noqa: E402

STARTED = time.monotonic()
PAGE = 100  # the rows the list fetches and draws first (console/screens/list.js); the rest come with "Show more"

# Runs in the page once every row is there: resolves when the main thread has been idle, with the time since the
# navigation started (performance.now()'s origin) and the bytes every resource and the page itself transferred.
SETTLED = """async (count) => {
  await new Promise((resolve) => requestIdleCallback(resolve, { timeout: 5000 }));
  const rows = document.querySelectorAll("tr[data-name]").length;
  const entries = [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")];
  return {
    interactive_ms: performance.now(),
    rows,
    transferred_bytes: entries.reduce((sum, e) => sum + (e.transferSize || 0), 0),
    decoded_bytes: entries.reduce((sum, e) => sum + (e.decodedBodySize || 0), 0),
    requests: entries.length,
    slowest: entries
      .map((e) => [e.name.split("/").slice(3).join("/"), Math.round(e.startTime), Math.round(e.responseEnd)])
      .sort((a, b) => b[2] - a[2])
      .slice(0, 4),
  };
}"""


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def measure_list(url: str, namespace: str, count: int, rounds: int) -> dict[str, Any]:
    results = []
    with chromium() as browser:
        for _ in range(rounds):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_init_script(f"localStorage.setItem('dais.token', {json.dumps(ADMIN_TOKEN)})")
            page = context.new_page()
            page.goto(f"{url}/#/ns/{namespace}")
            page.wait_for_function(
                "(n) => document.querySelectorAll('tr[data-name]').length >= n", arg=min(count, PAGE), timeout=60_000
            )
            results.append(page.evaluate(SETTLED, count))
            context.close()
    interactive = [r["interactive_ms"] for r in results]
    return {
        "list_endpoints": count,
        "list_rows_first_shown": results[-1]["rows"],
        "list_time_to_interactive_median_ms": round(statistics.median(interactive), 1),
        "list_time_to_interactive_max_ms": round(max(interactive), 1),
        "list_transferred_bytes": results[-1]["transferred_bytes"],
        "list_decoded_bytes": results[-1]["decoded_bytes"],
        "list_requests": results[-1]["requests"],
        "list_rounds": rounds,
        "list_slowest_resources_start_end_ms": results[-1]["slowest"],
        "list_goal_met": max(interactive) <= 1500,
    }


def measure_analytics(url: str, database_url: str, namespace: str, name: str, rounds: int) -> dict[str, Any]:
    sessions = make_sessionmaker(make_engine(database_url))
    with sessions() as session:
        endpoint_id = session.scalar(select(Endpoint.id).where(Endpoint.namespace == namespace, Endpoint.name == name))
    assert endpoint_id is not None
    now = int(time.time())
    rows = fill_history(sessions, [endpoint_id], start=now - 26 * 3600, end=now)
    with sessions.begin() as session:
        maintain(session, now=datetime.now(UTC))
        # The route shows nothing from before an endpoint existed: this one has served for the whole history.
        created = datetime.now(UTC) - timedelta(hours=27)
        session.execute(update(Endpoint).where(Endpoint.id == endpoint_id).values(created_at=created))
    log(f"analytics: {rows} samples for {namespace}/{name}; opening its tab {rounds} times")
    took = []
    with chromium() as browser:
        for _ in range(rounds):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_init_script(f"localStorage.setItem('dais.token', {json.dumps(ADMIN_TOKEN)})")
            page = context.new_page()
            page.goto(f"{url}/#/e/{namespace}/{name}/analytics")
            page.wait_for_selector("section.analytics[data-render-ms]", timeout=60_000)
            page.evaluate("() => delete document.querySelector('section.analytics').dataset.renderMs")
            page.get_by_label("Time range").select_option("24h")
            page.wait_for_selector("section.analytics[data-render-ms]", timeout=60_000)
            took.append(float(page.eval_on_selector("section.analytics", "(e) => e.dataset.renderMs")))
            context.close()
    return {
        "analytics_24h_sample_rows": rows,
        "analytics_24h_render_median_ms": round(statistics.median(took), 1),
        "analytics_24h_render_max_ms": round(max(took), 1),
        "analytics_rounds": rounds,
        "analytics_goal_met": max(took) <= 500,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dais-bench-console-") as tmp, postgres_server() as server:
        home = Path(tmp)
        database_url = create_database(server, "console").replace("postgresql://", "postgresql+psycopg://")
        migrations.upgrade(database_url)
        with HubServer() as hub:
            add_standard_models(hub)
            env = {"DAIS_CONTROLLER__RUNTIME": "none"}
            secret = Fernet.generate_key().decode()
            with api_server(
                database_url, workers=1, secret_key=secret, home=home, hub_url=hub.url, extra_env=env
            ) as api:
                seed(api.url, namespaces=1, per_namespace=args.endpoints, concurrency=8)
                log(f"{args.endpoints} endpoints created; loading the list page {args.rounds} times")
                result.update(measure_list(api.url, NS_FORMAT % 0, args.endpoints, args.rounds))
                result.update(measure_analytics(api.url, database_url, NS_FORMAT % 0, NAME_FORMAT % 0, args.rounds))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
