"""Autoscaler: the cost of a tick, the wake fast path, and the policy on three traces.

Run from the repository root: ``.venv/bin/python benchmarks/autoscaler.py`` (needs the PostgreSQL and
Prometheus server binaries: ``make system-deps``).

It starts a throw-away PostgreSQL and a real Prometheus scraping a test exporter (tests/fixtures/prometheus.py),
seeds 1,000 endpoints (800 CPU, 200 GPU, two Ready pods each, gateway activity for each), and measures:

a. tick: the autoscaler's own CPU seconds for one tick over every endpoint (read, query Prometheus, decide,
   write), the clock moving a minute per tick so every endpoint's scale-up and scale-down are evaluated and
   its state rewritten each time (the worst case); with the Prometheus queries and SQL statements per tick;
b. wake: from ``request_wake`` (the gateway's NOTIFY) to the desired count committed, seen as the NOTIFY the
   controller receives;
c. traces (benchmarks/traces/*.csv through ``dais autoscaler simulate``'s code): from sustained load above the
   threshold to the scale-up decision, replica-minutes against an oracle that knows the future, oscillations,
   seconds overloaded (more work than the Ready replicas can do) and seconds above the threshold; the same for
   the anchor, an HPA-like baseline (``autoscaler.simulate.hpa_like``: the proportional rule, 10 % tolerance
   both ways, a 300-s scale-down window) replayed on the same traces, per trace whether Dais is at least as
   good on each figure, and whether it serves at least as well (overloaded, above the threshold, oscillations)
   on every trace. The oracle never runs above the threshold; a baseline that does can cost less than it.
   ``--traces-only`` runs just this part.

Stdout: one JSON object; progress on stderr. Everything started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import event  # noqa: E402

import migrations  # noqa: E402
from api.main import build_state, create_app  # noqa: E402
from autoscaler.app import Autoscaler, policy_config  # noqa: E402
from autoscaler.policy import PolicyConfig  # noqa: E402
from autoscaler.simulate import Trace, hpa_like, scaling_for, simulate  # noqa: E402
from autoscaler.sources import EndpointPod, HardwareUse, Signals  # noqa: E402
from autoscaler.tick import Ticker  # noqa: E402
from core.db.changes import CHANNEL, request_wake  # noqa: E402
from core.db.crypto import new_key  # noqa: E402
from core.db.session import make_engine, make_sessionmaker  # noqa: E402
from core.prometheus import PrometheusClient  # noqa: E402
from core.settings import AutoscalerSettings, ControllerSettings, HubSettings, Settings  # noqa: E402
from tests.factories import ADMIN_TOKEN, add_standard_models, endpoint_body  # noqa: E402
from tests.fixtures.hub import HubServer  # noqa: E402
from tests.fixtures.kube import wait_for  # noqa: E402
from tests.fixtures.postgres import create_database, postgres_server  # noqa: E402
from tests.fixtures.prometheus import LoadExporter, prometheus_server  # noqa: E402

NAMESPACE = "dais-endpoints"
GOAL_TICK_CPU_S = 1.0
GOAL_WAKE_MS = 1000.0


def log(message: str) -> None:
    print(f"[bench-autoscaler] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def seed(database: str, settings: Settings, endpoints: int) -> list[tuple[str, str, bool]]:
    """Two endpoints through the API (one CPU, one GPU), cloned in SQL; returns (id, name, gpu) for all."""
    state = build_state(settings)
    with TestClient(create_app(settings, state=state), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        from api.bootstrap import ensure_admin

        ensure_admin(state.sessions, settings, datetime.now(UTC))
        for name, gpu in (("seed-cpu", False), ("seed-gpu", True)):
            body = endpoint_body(name)
            if not gpu:
                body["compute"].update(accelerator="cpu", instanceType="intel-spr", instanceSize="x2")
            body["compute"]["scaling"] = {"minReplica": 1, "maxReplica": 8}
            response = client.post("/v2/endpoint/admin", json=body)
            assert response.status_code == 200, response.text
    gpus = endpoints // 5
    with psycopg.connect(database, autocommit=True) as db:
        for seed_name, count, prefix in (("seed-cpu", endpoints - gpus, "c"), ("seed-gpu", gpus, "g")):
            db.execute(
                """
                INSERT INTO endpoints (id, namespace, name, spec, secrets, generation, accelerators, quota_key,
                    resolution, paused, scaled_to_zero, created_at, created_by, updated_at, updated_by)
                SELECT md5(random()::text || g), namespace, %(prefix)s || '-' || lpad(g::text, 5, '0'), spec,
                    secrets, generation, accelerators, quota_key, resolution, false, false, created_at, created_by,
                    updated_at, updated_by
                FROM endpoints, generate_series(1, %(count)s) AS g WHERE name = %(seed)s
                """,
                {"prefix": prefix, "count": count, "seed": seed_name},
            )
        db.execute("DELETE FROM endpoints WHERE name LIKE 'seed-%'")
        db.execute(
            """
            INSERT INTO endpoint_status (endpoint_id, state, ready_replica, target_replica, observed_generation,
                conditions, updated_at)
            SELECT id, 'running', 2, 2, generation, '[]', now() FROM endpoints
            """
        )
        db.execute(
            """
            INSERT INTO endpoint_activity (endpoint_id, gateway, last_request_at, in_flight, pending_mean, updated_at)
            SELECT id, 'bench', now(), 2, 2.0, now() FROM endpoints
            """
        )
        rows = db.execute("SELECT id, name, spec->'compute'->>'accelerator' = 'gpu' FROM endpoints").fetchall()
    return [(str(i), str(n), bool(g)) for i, n, g in rows]


def measure_ticks(
    sessions: Any,
    engine: Any,
    prometheus_url: str,
    config: AutoscalerSettings,
    ticks: int,
    pods: dict[str, EndpointPod],
) -> dict[str, Any]:
    """``pods``: pod name → endpoint id, as the autoscaler lists them by label on a cluster (none here)."""
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    event.listen(engine, "before_cursor_execute", count)
    prometheus = PrometheusClient(prometheus_url, timeout=10)
    now = [datetime.now(UTC)]
    ticker = Ticker(
        sessions=sessions,
        source=Signals(HardwareUse(prometheus, config, NAMESPACE, pods=lambda: pods)),
        config=policy_config(config),
        clock=lambda: now[0],
    )
    cpu: list[float] = []
    wall: list[float] = []
    queries: list[int] = []
    sql: list[int] = []
    decisions = 0
    for _ in range(ticks):
        before_cpu, before_wall, before_queries, before_sql = (
            time.process_time(),
            time.perf_counter(),
            prometheus.queries,
            statements,
        )
        made = ticker.tick()
        cpu.append(time.process_time() - before_cpu)
        wall.append(time.perf_counter() - before_wall)
        queries.append(prometheus.queries - before_queries)
        sql.append(statements - before_sql)
        decisions = len(made)
        now[0] += timedelta(seconds=60)
    event.remove(engine, "before_cursor_execute", count)
    prometheus.close()
    steady = cpu[1:]
    return {
        "endpoints_decided_per_tick": decisions,
        "tick_cpu_s_first": round(cpu[0], 3),
        "tick_cpu_s_p50": round(statistics.median(steady), 3),
        "tick_cpu_s_max": round(max(steady), 3),
        "tick_wall_s_p50": round(statistics.median(wall[1:]), 3),
        "prometheus_queries_per_tick": max(queries),
        "sql_statements_per_tick_p50": int(statistics.median(sql[1:])),
    }


def measure_wakes(settings: Settings, database: str, sessions: Any, ids: list[str]) -> dict[str, Any]:
    """Endpoints the user scaled to zero, woken one at a time; timed to the controller's NOTIFY."""
    with psycopg.connect(database, autocommit=True) as db:
        db.execute("UPDATE endpoints SET scaled_to_zero = true WHERE id = ANY(%s)", (ids,))
        # Idle: otherwise the autoscaler's first tick wakes them itself (a request in flight).
        db.execute("UPDATE endpoint_activity SET in_flight = 0, pending_mean = 0 WHERE endpoint_id = ANY(%s)", (ids,))
    scaler = Autoscaler(settings, sessions=sessions)
    stop = threading.Event()
    thread = threading.Thread(target=scaler.run, args=(stop,), daemon=True)
    thread.start()
    latencies: list[float] = []
    try:
        wait_for(scaler.leading.is_set, timeout=30, what="the autoscaler to start")
        with psycopg.connect(database, autocommit=True) as listener:
            listener.execute(f"LISTEN {CHANNEL}")

            def woken(endpoint_id: str, timeout: float = 0.2) -> bool:
                """Sends a wake and waits for the controller's notification of that endpoint's new count."""
                for _ in listener.notifies(timeout=0.001):  # drop earlier ones
                    pass
                request_wake(sessions, endpoint_id)
                return any(n.payload == endpoint_id for n in listener.notifies(timeout=timeout, stop_after=1))

            wait_for(lambda: woken(ids[0]), timeout=60, what="the wake listener (after the first tick)", interval=0.2)
            for endpoint_id in ids[1:]:
                started = time.perf_counter()
                if woken(endpoint_id, timeout=5):
                    latencies.append((time.perf_counter() - started) * 1000)
    finally:
        stop.set()
        thread.join(timeout=30)
    return {
        "wakes": len(latencies),
        "wake_signal_to_stored_p50_ms": round(statistics.median(latencies), 1),
        "wake_signal_to_stored_p99_ms": round(percentile(latencies, 0.99), 1),
    }


FIGURES = ("overloaded_s", "above_threshold_s", "cost_vs_oracle_ratio", "oscillations")
SERVICE = ("overloaded_s", "above_threshold_s", "oscillations")  # what the user was promised; cost is the price


def measure_traces() -> dict[str, Any]:
    found = {}
    for path in sorted((REPO / "benchmarks" / "traces").glob("*.csv")):
        trace = Trace.read(path)
        dais = simulate(trace, scaling_for(trace, {}), PolicyConfig()).summary()
        hpa = simulate(trace, scaling_for(trace, {}), PolicyConfig(), policy=hpa_like).summary()
        found[path.stem] = {
            **dais,
            "hpa_like": {figure: hpa[figure] for figure in (*FIGURES, "decisions")},
            "at_least_as_good_as_hpa_like": {figure: dais[figure] <= hpa[figure] for figure in FIGURES},
            "overloaded_s_vs_hpa_like_ratio": round(dais["overloaded_s"] / hpa["overloaded_s"], 2)
            if hpa["overloaded_s"]
            else None,
        }
    return {
        "traces": found,
        "dais_serves_at_least_as_well_as_hpa_like_on_every_trace": all(
            found[name]["at_least_as_good_as_hpa_like"][figure] for name in found for figure in SERVICE
        ),
        "dais_less_overloaded_than_hpa_like_on_spike": found["spike"]["overloaded_s"]
        < found["spike"]["hpa_like"]["overloaded_s"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=6)
    parser.add_argument("--wakes", type=int, default=50)
    parser.add_argument("--traces-only", action="store_true", help="only replay the traces (no servers)")
    args = parser.parse_args()
    if args.traces_only:
        print(json.dumps(measure_traces(), indent=2))
        return 0

    home = Path(tempfile.mkdtemp(prefix="dais-bench-autoscaler-"))
    config = AutoscalerSettings(utilization_window_seconds=10, tick_seconds=3600)
    with ExitStack() as stack:
        log("starting PostgreSQL, the local Hub, the load exporter and Prometheus")
        server = stack.enter_context(postgres_server())
        database = create_database(server, "dais_bench_autoscaler")
        migrations.upgrade(database)
        hub = stack.enter_context(HubServer())
        add_standard_models(hub)
        exporter = LoadExporter()
        stack.callback(exporter.close)
        settings = Settings(
            database_url=database,
            secret_key=new_key(),
            admin_token=ADMIN_TOKEN,
            home=home,
            log_json=False,
            log_level="WARNING",
            hub=HubSettings(url=hub.url, cache_seconds=0),
            autoscaler=config,
            controller=ControllerSettings(runtime="none"),  # the shipped hardware catalog, as on a cluster
        )
        log(f"seeding {args.endpoints} endpoints")
        endpoints = seed(database, settings, args.endpoints)
        pods: dict[str, EndpointPod] = {}
        for index, (endpoint_id, name, gpu) in enumerate(endpoints):
            for replica in ("a1b2c", "d3e4f"):
                pod = f"ep-{name}-{endpoint_id[:12]}-7d9f8c6b5-{replica}"
                pods[pod] = EndpointPod(endpoint_id)
                load = 40 + index % 60  # 40..99 %: some scale up, some down, some hold
                exporter.set(pod, namespace=NAMESPACE, cpu_percent=load, gpu_percent=load if gpu else None)
        prometheus = stack.enter_context(prometheus_server([f"127.0.0.1:{exporter.port}"], scrape_interval="2s"))
        log("waiting for Prometheus to hold a full window of every series")
        check = PrometheusClient(prometheus, timeout=10)
        series = f'container_cpu_usage_seconds_total{{namespace="{NAMESPACE}",container="engine"}}'
        full = f"count_over_time({series}[12s]) >= 5"
        wait_for(
            lambda: len(check.vector(full)) >= 2 * len(endpoints),
            timeout=120,
            what="full windows",
            interval=1,
        )
        check.close()

        engine = make_engine(database, pool_size=4)
        sessions = make_sessionmaker(engine)
        log(f"timing {args.ticks} ticks over {len(endpoints)} endpoints")
        figures: dict[str, Any] = {"endpoints": len(endpoints)}
        figures.update(measure_ticks(sessions, engine, prometheus, config, args.ticks, pods))
        figures["goal_tick_cpu_s"] = GOAL_TICK_CPU_S
        log(f"timing {args.wakes} wakes")
        figures.update(measure_wakes(settings, database, sessions, [e[0] for e in endpoints[: args.wakes]]))
        figures["goal_wake_ms"] = GOAL_WAKE_MS
        log("replaying the traces")
        figures.update(measure_traces())
        figures["goal_scale_up_reaction_max_s"] = PolicyConfig().up_interval_s + AutoscalerSettings().tick_seconds
        figures["goal_diurnal_oscillations"] = 0
        engine.dispose()
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
