"""What the observability routes cost: logs, the live feed, metric history and its sampler.

Run from the repository root: ``.venv/bin/python benchmarks/observability.py``. Needs the PostgreSQL server
binaries (``make system-deps``).

What it does, on a throw-away PostgreSQL and ``dais api`` (the local runtime's settings, no controller):

1. **logs**: one endpoint whose replica wrote 30 MiB of lines (rotated files, as the local runtime keeps
   them); ``GET …/logs?tail=1000`` timed over many requests (goal: p99 ≤ 100 ms).
2. **live feed**: 100 watchers on ``GET /v2/endpoint/{ns}?watch=true``; status events committed one at a time
   (as the controller commits them) and each watcher's delay from the commit to the event's arrival
   (goal: p99 ≤ 200 ms).
3. **metric history**: ``GET …/metrics`` for 24 h at 1-minute steps, every series, on the embedded store (26 h of
   10-s samples for 20 endpoints, rolled up as the controller does) and on Prometheus (a real one, its TSDB
   backfilled with ``promtool`` with 25 h of the gateway's series at a 15-s scrape interval) (goal: p99 ≤ 100 ms
   on each; the first read, before any cache, is shown apart: the API keeps Prometheus's final points);
4. **the embedded sampler**: the CPU seconds per minute that writing 1,000 endpoints' samples costs (six 10-s
   ticks of the gateway's and the controller's rows, and one rollup-and-prune), in this process.

Stdout: exactly one JSON object. Progress goes to stderr. Everything started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy import select, update  # noqa: E402

import migrations  # noqa: E402
from benchmarks.api import ADMIN_TOKEN, api_server  # noqa: E402
from core import replica_logs  # noqa: E402
from core.db import feed  # noqa: E402
from core.db.metric_samples import maintain, write_replicas  # noqa: E402
from core.db.models import DURATION_BUCKETS_MS, Endpoint  # noqa: E402
from core.db.session import make_engine, make_sessionmaker  # noqa: E402
from gateway.history import write_samples  # noqa: E402
from tests.factories import local_endpoint_body  # noqa: E402
from tests.fixtures.hub import HubServer  # noqa: E402
from tests.fixtures.metric_history import REPLICAS, TRAFFIC, fill_history  # noqa: E402
from tests.fixtures.models import tiny_llama_gguf  # noqa: E402
from tests.fixtures.postgres import create_database, free_port, postgres_server  # noqa: E402
from tests.fixtures.server import running  # noqa: E402

STARTED = time.monotonic()
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MODEL = "dais-bench/tiny-chat"


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def timed(call: Callable[[], Any], rounds: int) -> list[float]:
    took = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        took.append((time.perf_counter() - start) * 1000)
    return took


def figures(prefix: str, took_ms: list[float]) -> dict[str, float]:
    return {
        f"{prefix}_p50_ms": round(percentile(took_ms, 0.5), 2),
        f"{prefix}_p99_ms": round(percentile(took_ms, 0.99), 2),
        f"{prefix}_mean_ms": round(statistics.fmean(took_ms), 2),
    }


# -- logs --------------------------------------------------------------------------------------------------------


def bench_logs(url: str, home: Path, endpoint_id: str, rounds: int) -> dict[str, Any]:
    folder = replica_logs.directory(home, endpoint_id)
    record = replica_logs.ReplicaRecord("r-bench", datetime.now(UTC))
    replica_logs.write_record(folder, record)
    writer = replica_logs.LogWriter(folder / "r-bench.log")
    text = "INFO dais.engine.span request completed in 12.3 ms with 42 tokens " * 2
    for i in range(400_000):
        writer.write("stderr" if i % 3 else "stdout", f"{i} {text}")
    writer.close()
    size = sum(p.stat().st_size for p in folder.glob("r-bench.log*"))
    log(f"logs: {size / 2**20:.1f} MiB written; timing tail=1000")
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as client:

        def tail() -> None:
            answer = client.get("/v2/endpoint/admin/logged/logs", params={"tail": 1000})
            answer.raise_for_status()
            assert len(answer.json()["lines"]) == 1000

        timed(tail, 5)  # warm-up
        took = timed(tail, rounds)
    return {"logs_mib": round(size / 2**20, 1), **figures("logs_tail_1000", took), "logs_requests": rounds}


# -- the live feed -----------------------------------------------------------------------------------------------


async def _watch(url: str, arrivals: dict[int, list[float]], count: list[int]) -> None:
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as client,
        client.stream("GET", f"{url}/v2/endpoint/admin", params={"watch": "true"}, headers=AUTH) as answer,
    ):
        answer.raise_for_status()
        count[0] += 1
        async for line in answer.aiter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                arrivals.setdefault(event["sequence"], []).append(time.time())


def bench_feed(url: str, database_url: str, watchers: int, events: int) -> dict[str, Any]:
    sessions = make_sessionmaker(make_engine(database_url))
    arrivals: dict[int, list[float]] = {}
    committed: dict[int, float] = {}

    async def run() -> None:
        count = [0]
        tasks = [asyncio.create_task(_watch(url, arrivals, count)) for _ in range(watchers)]
        deadline = time.monotonic() + 60
        while count[0] < watchers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {count[0]} of {watchers} watchers connected")
            await asyncio.sleep(0.05)
        log(f"feed: {watchers} watchers connected; committing {events} status events")
        for sequence in range(events):
            await asyncio.to_thread(_commit, sessions, sequence, committed)
            await asyncio.sleep(0.05)
        deadline = time.monotonic() + 30
        while sum(len(v) for v in arrivals.values()) < watchers * events and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())
    delays = [(t - committed[s]) * 1000 for s, times in arrivals.items() for t in times]
    return {
        "feed_watchers": watchers,
        "feed_events": events,
        "feed_deliveries": len(delays),
        "feed_deliveries_missing": watchers * events - len(delays),
        **figures("feed_commit_to_event", delays),
    }


def _commit(sessions: Any, sequence: int, committed: dict[int, float]) -> None:
    with sessions() as session, session.begin():
        event = feed.Event("admin", "bench", "bench", "status", {"name": "bench", "sequence": sequence})
        feed.publish(session, [event], now=datetime.now(UTC))
    committed[sequence] = time.time()  # after the commit returned: the delay measured is at least the real one


# -- metric history -------------------------------------------------------------------------------------------------

HISTORY_ENDPOINTS = 20
GATEWAY_BUCKETS = (*(f"{b:g}" for b in DURATION_BUCKETS_MS), "+Inf")  # the gateway's histogram


def backfill_prometheus(folder: Path, *, label: str, hours: int) -> Path:
    """A Prometheus TSDB holding ``hours`` of the gateway's series for one endpoint, as a 15-s scrape would have
    recorded them (promtool builds the blocks from OpenMetrics text)."""
    now = int(time.time())
    start = now - hours * 3600
    stamps = range(start, now, 15)
    selector = f'endpoint="{label}"'
    lines: list[str] = []

    def family(name: str, kind: str, series: list[tuple[str, str, Callable[[int], float]]]) -> None:
        lines.append(f"# TYPE {name} {kind}")
        for sample, labels, value in series:
            lines.extend(f"{sample}{{{labels}}} {value(i)} {t}" for i, t in enumerate(stamps))

    family(
        "llm_requests",
        "counter",
        [("llm_requests_total", f'{selector},code="{c}"', lambda i, k=k: k * i) for c, k in (("2xx", 30), ("4xx", 1))],
    )
    family("llm_failures", "counter", [("llm_failures_total", selector, lambda i: i // 40)])
    family(
        "llm_internal_request_duration_ms_bucket",
        "unknown",
        [
            ("llm_internal_request_duration_ms_bucket", f'{selector},le="{le}"', lambda i, n=n: (n + 1) * 3 * i)
            for n, le in enumerate(GATEWAY_BUCKETS)
        ],
    )
    for gauge in ("dais_gateway_pending", "dais_gateway_held"):
        family(gauge, "gauge", [(gauge, selector, lambda i: (i % 9) / 3)])
    for counter in ("llm_prompt_tokens", "llm_completion_tokens"):
        family(counter, "counter", [(f"{counter}_total", selector, lambda i: 400 * i)])
    lines.append("# EOF")
    source = folder / "backfill.om"
    source.write_text("\n".join(lines) + "\n")
    data = folder / "prometheus-data"
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
        check=True,
        capture_output=True,
    )
    return data


@contextmanager
def prometheus_with(data: Path) -> Iterator[str]:
    config = data.parent / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=30d",
    ]
    with running(command, log_path=data.parent / "prometheus.log", health_url=f"{url}/-/ready", name="prometheus"):
        yield url


def bench_history(url: str, database_url: str, endpoint_id: str, rounds: int) -> dict[str, Any]:
    sessions = make_sessionmaker(make_engine(database_url))
    now = int(time.time())
    others = [f"bench{i:027d}" for i in range(HISTORY_ENDPOINTS - 1)]
    rows = fill_history(sessions, [endpoint_id, *others], start=now - 26 * 3600, end=now)
    with sessions.begin() as session:
        maintain(session, now=datetime.now(UTC))  # the controller's rollups, as they stand a day on
        # The route shows nothing from before an endpoint existed: this one has served for the whole history.
        session.execute(
            update(Endpoint)
            .where(Endpoint.id == endpoint_id)
            .values(created_at=datetime.now(UTC) - timedelta(hours=27))
        )
    log(f"metric history: {rows} samples written and rolled up; timing 24 h at 1-minute steps")
    end = datetime.fromtimestamp(now, UTC)
    params = {"from": (end - timedelta(hours=24)).isoformat(), "to": end.isoformat(), "step": "60"}
    result: dict[str, Any] = {"history_sample_rows": rows}
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as client:
        for source in ("embedded", "prometheus"):

            def read(source: str = source) -> None:
                answer = client.get("/v2/endpoint/admin/logged/metrics", params={**params, "source": source})
                answer.raise_for_status()
                body = answer.json()
                assert body["source"] == source
                assert len(body["timestamps"]) >= 1440
                assert any(v for v in body["series"]["requests_2xx"] if v), f"{source}: no requests figures"

            # The first read finds no cache (Prometheus's range cache, the database's pages): shown apart.
            result[f"history_24h_1m_{source}_first_read_ms"] = round(timed(read, 1)[0], 2)
            timed(read, 2)
            result.update(figures(f"history_24h_1m_{source}", timed(read, rounds)))
    return result


def bench_sampler(database_url: str, endpoints: int = 1000) -> dict[str, Any]:
    """CPU seconds this process spends per minute writing ``endpoints``' samples: six ticks of the gateway's rows
    and the controller's, and one maintenance."""
    sessions = make_sessionmaker(make_engine(database_url))
    ids = [f"sampler{i:025d}" for i in range(endpoints)]
    traffic = [replace(TRAFFIC, endpoint_id=i) for i in ids]
    replicas = [replace(REPLICAS, endpoint_id=i) for i in ids]
    start = (int(time.time()) // 60 + 1) * 60
    cpu = time.process_time()
    for tick in range(1, 7):
        at = start + 10 * tick
        write_samples(sessions, [(at, traffic)], source="bench-gateway")
        with sessions.begin() as session:
            write_replicas(session, replicas, at=at)
    writes = time.process_time() - cpu
    cpu = time.process_time()
    with sessions.begin() as session:
        maintain(session, now=datetime.fromtimestamp(start + 60 + 120, UTC))
    upkeep = time.process_time() - cpu
    return {
        "sampler_endpoints": endpoints,
        "sampler_writes_cpu_s_per_minute": round(writes, 3),
        "sampler_maintenance_cpu_s_per_minute": round(upkeep, 3),
        "sampler_cpu_s_per_1000_endpoints_per_minute": round((writes + upkeep) * 1000 / endpoints, 3),
    }


# -- main --------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300, help="requests timed per route")
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--events", type=int, default=40)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dais-bench-observability-") as tmp, postgres_server() as server:
        home = Path(tmp)
        database_url = create_database(server, "observability").replace("postgresql://", "postgresql+psycopg://")
        migrations.upgrade(database_url)
        data = backfill_prometheus(home, label="admin/logged", hours=25)
        with HubServer() as hub, prometheus_with(data) as prometheus:
            hub.add_model(MODEL, {"tiny.gguf": tiny_llama_gguf(home / "tiny.gguf")}, pipeline_tag="text-generation")
            # Logs are the local runtime's files; no controller runs. Metric history reads both sources.
            env = {"DAIS_CONTROLLER__RUNTIME": "local", "DAIS_PROMETHEUS__URL": prometheus}
            with api_server(
                database_url,
                workers=1,
                secret_key=Fernet.generate_key().decode(),
                home=home,
                hub_url=hub.url,
                extra_env=env,
            ) as api:
                body = local_endpoint_body("logged", MODEL)
                created = httpx.post(f"{api.url}/v2/endpoint/admin", json=body, headers=AUTH, timeout=30)
                if created.status_code != 200:
                    raise RuntimeError(f"creating the endpoint: {created.status_code} {created.text}")
                with make_sessionmaker(make_engine(database_url))() as session:
                    endpoint_id = session.scalar(select(Endpoint.id).where(Endpoint.name == "logged"))
                assert endpoint_id is not None
                result.update(bench_logs(api.url, home, endpoint_id, args.rounds))
                result.update(bench_feed(api.url, database_url, args.watchers, args.events))
                result.update(bench_history(api.url, database_url, endpoint_id, args.rounds))
                result.update(bench_sampler(database_url))
    result["logs_goal_met"] = result["logs_tail_1000_p99_ms"] <= 100
    result["feed_goal_met"] = result["feed_commit_to_event_p99_ms"] <= 200 and not result["feed_deliveries_missing"]
    result["history_goal_met"] = (
        result["history_24h_1m_embedded_p99_ms"] <= 100 and result["history_24h_1m_prometheus_p99_ms"] <= 100
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
