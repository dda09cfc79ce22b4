"""What the observability routes cost: logs, the live feed, metric history and its sampler.

Run from the repository root: ``.venv/bin/python benchmarks/observability.py``. Needs the PostgreSQL server
binaries (``make system-deps``).

What it does, on a throw-away PostgreSQL and ``dais api`` (the local runtime's settings, no controller):

1. **logs**: one endpoint whose replica wrote 30 MiB of lines (rotated files, as the local runtime keeps
   them); ``GET …/logs?tail=1000`` timed over many requests (goal: p99 ≤ 100 ms).
2. **live feed**: 100 watchers on ``GET /v2/endpoint/{ns}?watch=true``; status events committed one at a time
   (as the controller commits them) and each watcher's delay from the commit to the event's arrival
   (goal: p99 ≤ 200 ms).
3. **metric history** and **the embedded sampler**: see ``metric_history`` below.

Stdout: exactly one JSON object. Progress goes to stderr. Everything started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy import select  # noqa: E402

import migrations  # noqa: E402
from benchmarks.api import ADMIN_TOKEN, api_server  # noqa: E402
from core import replica_logs  # noqa: E402
from core.db import feed  # noqa: E402
from core.db.models import Endpoint  # noqa: E402
from core.db.session import make_engine, make_sessionmaker  # noqa: E402
from tests.fixtures.hub import HubServer  # noqa: E402
from tests.fixtures.models import tiny_llama_gguf  # noqa: E402
from tests.fixtures.postgres import create_database, postgres_server  # noqa: E402

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
        with HubServer() as hub:
            hub.add_model(MODEL, {"tiny.gguf": tiny_llama_gguf(home / "tiny.gguf")}, pipeline_tag="text-generation")
            env = {"DAIS_CONTROLLER__RUNTIME": "local"}  # logs are the local runtime's files; no controller runs
            with api_server(
                database_url,
                workers=1,
                secret_key=Fernet.generate_key().decode(),
                home=home,
                hub_url=hub.url,
                extra_env=env,
            ) as api:
                body = {
                    "name": "logged",
                    "type": "protected",
                    "provider": {"vendor": "local", "region": "local"},
                    "compute": {
                        "accelerator": "cpu",
                        "instanceType": "cpu",
                        "instanceSize": "x1",
                        "scaling": {"minReplica": 1, "maxReplica": 1},
                    },
                    "model": {
                        "repository": MODEL,
                        "framework": "pytorch",
                        "task": "text-generation",
                        "image": {"llamacpp": {}},
                    },
                }
                created = httpx.post(f"{api.url}/v2/endpoint/admin", json=body, headers=AUTH, timeout=30)
                if created.status_code != 200:
                    raise RuntimeError(f"creating the endpoint: {created.status_code} {created.text}")
                with make_sessionmaker(make_engine(database_url))() as session:
                    endpoint_id = session.scalar(select(Endpoint.id).where(Endpoint.name == "logged"))
                assert endpoint_id is not None
                result.update(bench_logs(api.url, home, endpoint_id, args.rounds))
                result.update(bench_feed(api.url, database_url, args.watchers, args.events))
    result["logs_goal_met"] = result["logs_tail_1000_p99_ms"] <= 100
    result["feed_goal_met"] = result["feed_commit_to_event_p99_ms"] <= 200 and not result["feed_deliveries_missing"]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
