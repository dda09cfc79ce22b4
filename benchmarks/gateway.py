"""Gateway overhead, throughput against nginx, streaming time to first byte, and cold-start hand-off.

Run from the repository root: ``.venv/bin/python benchmarks/gateway.py`` (or ``make bench``). Needs ``wrk`` and
``nginx`` (Debian packages) and the PostgreSQL server binaries (``make system-deps``). Loopback only, bounded
in time (about a minute).

What it starts: a throw-away PostgreSQL, migrated; an upstream (nginx answering a small JSON body: the fastest
upstream we have, so the proxies are what is measured); nginx as a reverse proxy to that upstream (the
anchor); ``dais gateway`` as its own process routing ``/bench/ep/`` to the same upstream (rows written
straight into the database, as the API and controller would); the fake engine for streaming and cold starts.

Figures (wrk, 64 connections, 1 thread for the client):
- latency: paced load (each connection waits ``--pace-ms`` between requests, well below saturation), direct
  vs through the gateway (and nginx); added p50 / p99 = gateway minus direct at that percentile;
- throughput: unpaced, requests per second direct, through nginx (``worker_processes 1``, the gateway's one
  process and event loop) and through the gateway; nginx and the gateway take turns for ``--rounds`` rounds, so
  that a slow spell of this shared machine falls on both; the medians, and their ratio gateway / nginx;
- streaming: time to first byte of an SSE response, direct vs gateway, sequential requests;
- cold start: an endpoint at zero, a request held with ``X-Scale-Up-Timeout``; the time from the status
  write that shows a Ready replica (its commit) to the engine receiving the held request;
- limit refusals: ``dais_gateway_limit_refusals_total`` at the end, by limit, with the default limits: the load
  above must reach none of them.

The gateway runs its request path compiled (``gateway/native.py``), built here first when it is not yet;
``--plain`` measures it as plain Python instead. ``gateway_compiled`` says which one was measured.

Stdout: exactly one JSON object; progress on stderr. Everything started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

import migrations  # noqa: E402
from benchmarks.api import run_wrk, summarize  # noqa: E402
from core.db.models import Account, Endpoint, EndpointStatus  # noqa: E402
from core.db.session import make_engine, make_sessionmaker  # noqa: E402
from tests.fixtures import scrape  # noqa: E402
from tests.fixtures.engine import FakeEngine  # noqa: E402
from tests.fixtures.postgres import create_database, free_port, postgres_server  # noqa: E402

GOALS = {"added_p50_ms": 1.0, "added_p99_ms": 5.0, "throughput_ratio_vs_nginx": 0.5, "wake_handoff_p50_ms": 50.0}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- the processes -------------------------------------------------------------------------------------------


@contextmanager
def nginx(root: Path, *, upstream_port: int, proxy_port: int) -> Iterator[None]:
    """One nginx: a static JSON upstream on one port and a reverse proxy to it on another."""
    conf = root / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    upstream engine {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{upstream_port};
        location / {{ default_type application/json; return 200 '{{"generated_text": "ok"}}'; }}
    }}
    server {{
        listen 127.0.0.1:{proxy_port};
        location /bench/ep/ {{
            proxy_pass http://engine/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""
    )
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    process = subprocess.Popen([binary, "-c", str(conf), "-p", str(root)], stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{upstream_port}/", "nginx")
        yield
    finally:
        stop(process)


@contextmanager
def gateway_process(database_url: str, *, port: int, internal_port: int, compiled: bool) -> Iterator[None]:
    env = {
        **os.environ,
        "DAIS_GATEWAY_NATIVE": "1" if compiled else "0",
        "DAIS_DATABASE_URL": database_url,
        "DAIS_GATEWAY__LISTEN": f"127.0.0.1:{port}",
        "DAIS_GATEWAY__INTERNAL_LISTEN": f"127.0.0.1:{internal_port}",
        "DAIS_LOG_LEVEL": "WARNING",
    }
    dais = str(Path(sys.executable).with_name("dais"))
    process = subprocess.Popen([dais, "gateway"], env=env, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{internal_port}/readyz", "dais gateway")
        yield
    finally:
        stop(process)


def wait_http(url: str, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            threading.Event().wait(0.05)  # polling a starting process's port


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- the rows the API and the controller would write ---------------------------------------------------------


def add_endpoint(sessions: sessionmaker[Session], name: str, *, upstream: str | None, ready: int) -> str:
    now = datetime.now(UTC)
    ident = uuid.uuid4().hex
    spec = {"type": "public", "model": {"image": {"tgi": {}}}, "compute": {"scaling": {"minReplica": 0}}}
    with sessions.begin() as session:
        if session.get(Account, "bench") is None:
            session.add(Account(id="bench", name="bench", kind="user", created_at=now))
        session.add(
            Endpoint(
                id=ident,
                namespace="bench",
                name=name,
                spec=spec,
                generation=1,
                accelerators=0,
                quota_key="bench",
                paused=False,
                scaled_to_zero=ready == 0,
                created_at=now,
                created_by="bench",
                updated_at=now,
                updated_by="bench",
            )
        )
        session.flush()
        session.add(status_row(ident, upstream=upstream, ready=ready))
    return ident


def status_row(ident: str, *, upstream: str | None, ready: int) -> EndpointStatus:
    return EndpointStatus(
        endpoint_id=ident,
        state="running" if ready else "scaledToZero",
        message="bench",
        ready_replica=ready,
        target_replica=ready,
        url=None,
        observed_generation=1,
        conditions=[],
        upstream=upstream,
        addresses=[upstream.removeprefix("http://")] if upstream and ready else [],
        updated_at=datetime.now(UTC),
    )


# -- the measurements ----------------------------------------------------------------------------------------


def wrk_phase(wrk: str, url: str, *, duration: float, connections: int, pace_ms: float) -> dict[str, Any]:
    raw = run_wrk(
        wrk,
        script="proxy.lua",
        url=url,
        options={"delay_ms": pace_ms},
        duration=duration,
        threads=1,
        connections=connections,
    )
    return summarize(raw)


def ttfb(url: str, body: dict[str, Any], count: int) -> list[float]:
    times = []
    with httpx.Client(timeout=30) as client:
        client.post(url, json=body).raise_for_status()  # untimed: the connection is set up, as for the rest
        for _ in range(count):
            started = time.perf_counter()
            with client.stream("POST", url, json=body) as answer:
                chunks = answer.iter_raw()
                next(chunks)
                times.append((time.perf_counter() - started) * 1000)
                for _ in chunks:
                    pass
    return times


def handoffs(
    sessions: sessionmaker[Session], gateway: str, internal: str, engine: FakeEngine, count: int
) -> list[float]:
    """Each round: an endpoint at zero, one held request, then the status write that shows it Ready."""
    results = []
    with ThreadPoolExecutor(1) as pool:
        for round_ in range(count):
            name = f"cold-{round_}"
            ident = add_endpoint(sessions, name, upstream=None, ready=0)
            call = pool.submit(
                httpx.get, f"{gateway}/bench/{name}/echo/x", headers={"X-Scale-Up-Timeout": "30"}, timeout=60
            )
            wait_until(lambda n=name: held(internal, n) == 1, what="the request to be held")
            with sessions.begin() as session:
                status = session.get(EndpointStatus, ident)
                assert status is not None
                fresh = status_row(ident, upstream=engine.url, ready=1)
                for column in ("state", "ready_replica", "target_replica", "upstream", "addresses"):
                    setattr(status, column, getattr(fresh, column))
            committed = time.time()
            answer = call.result(timeout=60)
            if answer.status_code != 200:
                raise RuntimeError(f"the held request failed: {answer.text}")
            results.append((answer.json()["received_at"] - committed) * 1000)
    return results


def held(internal: str, name: str) -> float:
    return scrape.value(httpx.get(f"{internal}/metrics").text, "dais_gateway_held", endpoint=f"bench/{name}") or 0.0


def wait_until(condition: Any, *, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        threading.Event().wait(0.005)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))], 2)


# -- main ----------------------------------------------------------------------------------------------------


def compiled_gateway() -> bool:
    """Builds the gateway's compiled request path when this source has none yet; False when it cannot be."""
    from gateway import native

    if native.active():
        return True
    log("compiling the gateway's request path (gateway/native.py, about a minute)")
    try:
        native.build(quiet=True)
    except Exception as exc:  # no compiler, no mypy: measured as plain Python, and the JSON says so
        log(f"could not compile the gateway ({exc}); measuring it as plain Python")
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per wrk phase")
    parser.add_argument("--pace-ms", type=float, default=50.0, help="per-connection pause in latency phases")
    parser.add_argument("--streams", type=int, default=100, help="sequential streamed requests per path")
    parser.add_argument("--wakes", type=int, default=20, help="cold-start rounds")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds, nginx and the gateway in turn")
    parser.add_argument("--plain", action="store_true", help="the gateway as plain Python, not compiled")
    args = parser.parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None or not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        print("benchmarks/gateway.py needs wrk and nginx: apt-get install wrk nginx (or make bench)", file=sys.stderr)
        return 2
    compiled = not args.plain and compiled_gateway()
    ports = {k: free_port() for k in ("upstream", "nginx", "gateway", "internal")}
    root = Path(tempfile.mkdtemp(prefix="dais-bench-gw-"))
    try:
        with postgres_server() as server_url:
            url = create_database(server_url, "dais_bench_gateway")
            migrations.upgrade(url)
            sessions = make_sessionmaker(make_engine(url, pool_size=4))
            upstream = f"http://127.0.0.1:{ports['upstream']}"
            with nginx(root, upstream_port=ports["upstream"], proxy_port=ports["nginx"]), FakeEngine() as engine:
                add_endpoint(sessions, "ep", upstream=upstream, ready=1)
                add_endpoint(sessions, "stream", upstream=engine.url, ready=1)
                with gateway_process(url, port=ports["gateway"], internal_port=ports["internal"], compiled=compiled):
                    gateway = f"http://127.0.0.1:{ports['gateway']}"
                    internal = f"http://127.0.0.1:{ports['internal']}"
                    targets = {
                        "direct": f"{upstream}/generate",
                        "nginx": f"http://127.0.0.1:{ports['nginx']}/bench/ep/generate",
                        "gateway": f"{gateway}/bench/ep/generate",
                    }
                    for target in targets.values():
                        httpx.get(target).raise_for_status()
                    result = {"gateway_compiled": compiled}
                    result |= measure(args, wrk, targets, engine, gateway, internal, sessions)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


def measure(
    args: argparse.Namespace,
    wrk: str,
    targets: dict[str, str],
    engine: FakeEngine,
    gateway: str,
    internal: str,
    sessions: sessionmaker[Session],
) -> dict[str, Any]:
    paced, flat = {}, {}
    for name, url in targets.items():
        log(f"warm-up and paced latency: {name}")
        wrk_phase(wrk, url, duration=2, connections=args.connections, pace_ms=0)
        paced[name] = wrk_phase(wrk, url, duration=args.duration, connections=args.connections, pace_ms=args.pace_ms)
    log("throughput: direct")
    flat["direct"] = wrk_phase(wrk, targets["direct"], duration=args.duration, connections=args.connections, pace_ms=0)
    rounds: dict[str, list[dict[str, Any]]] = {"nginx": [], "gateway": []}
    for round_ in range(args.rounds):
        for name in rounds:
            log(f"throughput: {name}, round {round_ + 1} of {args.rounds}")
            phase = wrk_phase(wrk, targets[name], duration=args.duration, connections=args.connections, pace_ms=0)
            rounds[name].append(phase)
    for name, runs in rounds.items():
        flat[name] = sorted(runs, key=lambda phase: phase["rps"])[len(runs) // 2]  # the median round
    log("streaming: time to first byte")
    body = {"inputs": "x", "parameters": {"max_new_tokens": 8}}
    direct = ttfb(f"{engine.url}/generate_stream", body, args.streams)
    proxied = ttfb(f"{gateway}/bench/stream/generate_stream", body, args.streams)
    log("cold start hand-off")
    wakes = handoffs(sessions, gateway, internal, engine, args.wakes)
    refusals = {
        s.labels["limit"]: s.value
        for s in scrape.samples(httpx.get(f"{internal}/metrics").text)
        if s.name == "dais_gateway_limit_refusals_total" and s.value
    }
    phases = [*(("paced " + n, p) for n, p in paced.items()), ("direct", flat["direct"])]
    phases += [(f"{n} round {i + 1}", p) for n, runs in rounds.items() for i, p in enumerate(runs)]
    errors = {name: phase["error_count"] for name, phase in phases if phase["error_count"]}
    result = {
        "connections": args.connections,
        "pace_ms_per_connection": args.pace_ms,
        "paced_rps": {name: phase["rps"] for name, phase in paced.items()},
        "direct_p50_ms": paced["direct"]["p50_ms"],
        "direct_p99_ms": paced["direct"]["p99_ms"],
        "gateway_p50_ms": paced["gateway"]["p50_ms"],
        "gateway_p99_ms": paced["gateway"]["p99_ms"],
        "nginx_p50_ms": paced["nginx"]["p50_ms"],
        "nginx_p99_ms": paced["nginx"]["p99_ms"],
        "added_p50_ms": round(paced["gateway"]["p50_ms"] - paced["direct"]["p50_ms"], 2),
        "added_p99_ms": round(paced["gateway"]["p99_ms"] - paced["direct"]["p99_ms"], 2),
        "nginx_added_p50_ms": round(paced["nginx"]["p50_ms"] - paced["direct"]["p50_ms"], 2),
        "nginx_added_p99_ms": round(paced["nginx"]["p99_ms"] - paced["direct"]["p99_ms"], 2),
        "direct_rps": flat["direct"]["rps"],
        "nginx_rps": flat["nginx"]["rps"],
        "gateway_rps": flat["gateway"]["rps"],
        "gateway_saturated_p50_ms": flat["gateway"]["p50_ms"],
        "gateway_saturated_p99_ms": flat["gateway"]["p99_ms"],
        "throughput_ratio_vs_nginx": round(flat["gateway"]["rps"] / flat["nginx"]["rps"], 3),
        "throughput_rounds": args.rounds,
        "nginx_rps_rounds": [phase["rps"] for phase in rounds["nginx"]],
        "gateway_rps_rounds": [phase["rps"] for phase in rounds["gateway"]],
        "nginx_worker_processes": 1,
        "stream_ttfb_direct_p50_ms": percentile(direct, 50),
        "stream_ttfb_gateway_p50_ms": percentile(proxied, 50),
        "stream_ttfb_added_p50_ms": round(percentile(proxied, 50) - percentile(direct, 50), 2),
        "stream_ttfb_added_p99_ms": round(percentile(proxied, 99) - percentile(direct, 99), 2),
        "wake_handoff_p50_ms": percentile(wakes, 50),
        "wake_handoff_max_ms": round(max(wakes), 2),
        "wake_rounds": len(wakes),
        "errors": errors,
        "limit_refusals": refusals,
        "goals": GOALS,
    }
    result["goals_met"] = {
        "added_p50_ms": result["added_p50_ms"] <= GOALS["added_p50_ms"],
        "added_p99_ms": result["added_p99_ms"] <= GOALS["added_p99_ms"],
        "throughput_ratio_vs_nginx": result["throughput_ratio_vs_nginx"] >= GOALS["throughput_ratio_vs_nginx"],
        "wake_handoff_p50_ms": result["wake_handoff_p50_ms"] <= GOALS["wake_handoff_p50_ms"],
        "no_errors": not errors,
        "no_limit_refusals": not refusals,
    }
    return result


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        sys.exit(main())
