"""Control-plane API throughput and latency on a real PostgreSQL with 10,000 endpoints in 100 namespaces.

Run from the repository root: ``.venv/bin/python benchmarks/api.py`` (or ``make bench``). Needs ``wrk``
(``apt-get install wrk``) and the PostgreSQL server binaries (``make system-deps``).

What it does:

1. starts a throw-away PostgreSQL (tests/fixtures/postgres.py) and migrates a seed database;
2. starts ``dais api`` on 127.0.0.1 and seeds it through the API itself (POST /api/orgs, then concurrent
   POST /v2/endpoint/{ns}), so every row is exactly what the API writes, audit events included;
3. for each worker count (default 1 and 2): copies the seed database (``CREATE DATABASE … TEMPLATE``,
   so every run starts from the same state), starts ``dais api --workers N`` on it and runs wrk with
   16 connections for each phase: GET one random endpoint, LIST a random namespace of 100, UPDATE (PUT
   new tags and maxReplica 1 or 2) a random endpoint, CREATE endpoints with unique names. Each phase
   is a short unmeasured warm-up, then a fixed-length measured run. CREATE runs last, since it grows
   the namespaces LIST reads.

wrk's Lua scripts (benchmarks/wrk/) tally every response status; non-2xx responses and socket errors
are reported under ``errors`` and a phase with errors does not meet its goal.

Where the time goes: each phase also reports, from /proc, the CPU seconds of the API processes
(``api_by_process`` shows how evenly uvicorn's workers shared the connections), of our PostgreSQL and of
wrk, the API and PostgreSQL CPU milliseconds per request, and how many database connections the API
opened (pool churn). ``warnings`` flags errors, load from processes we did not start, and multi-worker
phases that ran on one worker.

Stdout: exactly one JSON object. Progress goes to stderr. Everything started here (API servers,
PostgreSQL, wrk) is stopped on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import psycopg  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

import migrations  # noqa: E402
from tests.factories import add_standard_models, endpoint_body  # noqa: E402
from tests.fixtures.hub import HubServer  # noqa: E402
from tests.fixtures.postgres import create_database, free_port, postgres_server  # noqa: E402

WRK_DIR = Path(__file__).resolve().parent / "wrk"
ADMIN_TOKEN = "dais_bench_admin_token_0123456789abcdef"
NS_FORMAT = "bench-%02d"  # shared with the Lua scripts, which format with the same syntax
NAME_FORMAT = "ep-%03d"
SEED_DB = "dais_bench_seed"
STARTED = time.monotonic()

# The goals. A phase with any error (non-2xx or socket error) misses its goals too.
GOAL_GET_RPS = 1500
GOAL_GET_P99_MS = 20
GOAL_LIST_P99_MS = 50
GOAL_CREATE_P99_MS = 50
GOAL_UPDATE_P99_MS = 50


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """The benchmark could not run; the message says why."""


# -- the API server ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiServer:
    url: str
    pid: int  # also its process group: every worker is in it


def _dais_executable() -> str:
    beside = Path(sys.executable).parent / "dais"
    if beside.exists():
        return str(beside)
    found = shutil.which("dais")
    if found is None:
        raise BenchError("the `dais` command is not installed: run `make deps` and use .venv/bin/python")
    return found


@contextmanager
def api_server(
    database_url: str,
    *,
    workers: int,
    secret_key: str,
    home: Path,
    hub_url: str,
    extra_env: dict[str, str] | None = None,
) -> Iterator[ApiServer]:
    """``dais api --workers N`` on a free loopback port; yields its base URL once /readyz answers 200."""
    port = free_port()
    env = {
        **os.environ,
        "DAIS_DATABASE_URL": database_url,
        "DAIS_SECRET_KEY": secret_key,
        "DAIS_ADMIN_TOKEN": ADMIN_TOKEN,
        "DAIS_HOME": str(home),
        "DAIS_ACCESS_LOG": "false",
        "DAIS_LOG_LEVEL": "WARNING",
        "DAIS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        # Seeding puts 100 single-GPU endpoints in a namespace, and UPDATE raises some to maxReplica 2.
        "DAIS_DEFAULT_QUOTA_ACCELERATORS": "1000000",
        "DAIS_MAX_REPLICA_CEILING": "64",
        # Creates resolve their model on the Hub: here the local one of the tests, serving the one model used.
        "DAIS_HUB__URL": hub_url,
        # The API alone, with the shipped cloud hardware catalog (the local runtime's is this machine's).
        "DAIS_CONTROLLER__RUNTIME": "none",
        **(extra_env or {}),
    }
    log_path = home / f"api-{port}.log"
    command = [_dais_executable(), "api", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    with open(log_path, "wb") as log_file:
        # Its own session: Ctrl-C reaches us, not the server, and we stop the whole group in order.
        process = subprocess.Popen(
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log_path)
        yield ApiServer(url=url, pid=process.pid)
    except BenchError as exc:  # the server's own account of a failure, before its log is deleted
        raise BenchError(f"{exc}\n--- tail of the dais api log ---\n{_tail(log_path)}") from None
    finally:
        _stop(process)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as client:
        while True:
            if process.poll() is not None:
                raise BenchError(f"dais api exited with {process.returncode}:\n{_tail(log_path)}")
            try:
                if client.get(f"{url}/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"dais api not ready in {timeout}s:\n{_tail(log_path)}")
            time.sleep(0.1)  # polling a condition with a deadline, not a fixed wait


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (uvicorn shuts its workers down gracefully), then SIGKILL to the group we created."""
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stray workers, if any; the group is ours alone
    process.wait()


# -- seeding ------------------------------------------------------------------------------------------


def seed(url: str, *, namespaces: int, per_namespace: int, concurrency: int) -> None:
    """Orgs as admin, then every endpoint through POST /v2/endpoint/{ns}, ``concurrency`` at a time."""
    asyncio.run(_seed(url, namespaces=namespaces, per_namespace=per_namespace, concurrency=concurrency))


async def _seed(url: str, *, namespaces: int, per_namespace: int, concurrency: int) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:

        async def post(path: str, body: dict[str, Any]) -> None:
            response = await client.post(path, json=body)
            if response.status_code != 200:
                raise BenchError(f"seeding: POST {path} answered {response.status_code}: {response.text[:500]}")

        names = [NS_FORMAT % i for i in range(namespaces)]
        for name in names:
            await post("/api/orgs", {"name": name, "members": []})
        log(f"seeding: {namespaces} orgs created")

        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        for j in range(per_namespace):  # round-robin over namespaces, so concurrent creates rarely share one
            for ns in names:
                queue.put_nowait((f"/v2/endpoint/{ns}", endpoint_body(NAME_FORMAT % j)))
        total = queue.qsize()
        started = time.monotonic()
        done = 0

        async def worker() -> None:
            nonlocal done
            while not queue.empty():
                path, body = queue.get_nowait()
                await post(path, body)
                done += 1
                if done % 2000 == 0:
                    log(f"seeding: {done}/{total} endpoints ({done / (time.monotonic() - started):.0f}/s)")

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def check_seed(database_url: str, *, endpoints: int) -> None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM endpoints WHERE deleted_at IS NULL").fetchone()
        count = row[0] if row else 0
    if count != endpoints:
        raise BenchError(f"seeding: expected {endpoints} endpoints in the database, found {count}")


def vacuum(database_url: str) -> None:
    """Fresh planner statistics, and no autovacuum worker left to hold the template database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def sessions_opened(database_url: str) -> int:
    """PostgreSQL's count of connections ever opened to this database (pg_stat_database, PG 14+)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def copy_database(server_url: str, template: str, name: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        while True:
            try:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                break
            except psycopg.errors.ObjectInUse:  # an autovacuum worker on the template: it leaves soon
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    return server_url.rsplit("/", 1)[0] + f"/{name}"


# -- CPU accounting (Linux /proc): where the machine's time goes during a phase ------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _processes() -> Iterator[tuple[int, str, int, int, float, float]]:
    """(pid, comm, ppid, process group, CPU seconds, CPU seconds of its reaped children) of every process."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                stat = file.read()
        except OSError:
            continue  # gone meanwhile
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        own = (int(fields[11]) + int(fields[12])) / _TICK
        reaped = (int(fields[13]) + int(fields[14])) / _TICK
        yield int(entry), comm, int(fields[1]), int(fields[2]), own, reaped


def _postmaster(port: int) -> int | None:
    for pid, comm, _ppid, _pgrp, _cpu, _reaped in _processes():
        if comm != "postgres":
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                args = file.read().split(b"\0")
        except OSError:
            continue
        if any(a == b"-p" and b == str(port).encode() for a, b in itertools.pairwise(args)):
            return pid
    return None


def machine_busy_percent(seconds: float = 1.0) -> float | None:
    """How busy the whole machine is right now, sampled over ``seconds`` (Linux), before we add load."""
    if not os.path.exists("/proc/stat"):
        return None

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as file:
            ticks = [int(x) for x in file.readline().split()[1:]]
        return sum(ticks[:8]), ticks[3] + ticks[4]

    total0, idle0 = sample()
    time.sleep(seconds)  # a measurement window, not a wait for a condition
    total1, idle1 = sample()
    total = max(1, total1 - total0)
    return round(100 * (total - (idle1 - idle0)) / total, 1)


class CpuMeter:
    """CPU seconds of the API server (its process group; per process too, to show how evenly uvicorn's
    workers share the connections), our PostgreSQL (postmaster, live backends and, through the postmaster's
    reaped-children time, backends that exited meanwhile), wrk (our reaped children) and the whole
    machine; ``other`` is load we did not start."""

    def __init__(self, api_pid: int, postgres_port: int) -> None:
        self.api_pid = api_pid
        self.postmaster = _postmaster(postgres_port)
        self.available = os.path.exists("/proc/stat")

    def snapshot(self) -> dict[str, float]:
        out = {"api": 0.0, "postgres": 0.0}
        for pid, _comm, ppid, pgrp, cpu, reaped in _processes():
            if pgrp == self.api_pid:
                out["api"] += cpu
                out[f"api_pid_{pid}"] = cpu
            elif pid == self.postmaster:
                out["postgres"] += cpu + reaped
            elif ppid == self.postmaster:
                out["postgres"] += cpu
        times = os.times()
        out["wrk"] = times.children_user + times.children_system
        with open("/proc/stat") as file:
            ticks = [int(x) for x in file.readline().split()[1:]]
        idle = ticks[3] + ticks[4]  # idle + iowait
        out["idle"] = idle / _TICK
        out["busy"] = (sum(ticks[:8]) - idle) / _TICK
        return out

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
        used = {key: max(0.0, after[key] - before.get(key, 0.0)) for key in after}
        used["other"] = max(0.0, used["busy"] - used["api"] - used["postgres"] - used["wrk"])
        per_process = sorted((v for k, v in used.items() if k.startswith("api_pid_")), reverse=True)
        out: dict[str, Any] = {k: round(v, 2) for k, v in used.items() if not k.startswith("api_pid_")}
        out["api_by_process"] = [round(v, 2) for v in per_process if v >= 0.01]
        return out


# -- wrk ------------------------------------------------------------------------------------------------


def require_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise BenchError("wrk not found: install it with `apt-get install wrk` (Debian/Ubuntu), then run again")
    return found


def run_wrk(
    wrk: str,
    *,
    script: str,
    url: str,
    options: dict[str, Any],
    duration: float,
    threads: int,
    connections: int,
) -> dict[str, Any]:
    command = [
        wrk,
        "--threads",
        str(threads),
        "--connections",
        str(connections),
        "--duration",
        f"{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "--latency",
        "--script",
        str(WRK_DIR / script),
        url,
        "--",
        *(f"{key}={value}" for key, value in options.items()),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=duration + 60)
    line = next((x for x in result.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if result.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    raw: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
    return raw


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    seconds = raw["duration_us"] / 1e6
    percentiles = raw["latency_us"]["percentiles"]
    statuses = {str(k): v for k, v in sorted(raw["statuses"].items())}
    non_2xx = sum(v for k, v in statuses.items() if not 200 <= int(k) < 300)
    socket_errors = {k: v for k, v in raw["socket_errors"].items() if v}
    return {
        "requests": raw["requests"],
        "duration_s": round(seconds, 2),
        "rps": round(raw["requests"] / seconds, 1) if seconds else 0.0,
        "p50_ms": round(percentiles["50"] / 1000, 2),
        "p90_ms": round(percentiles["90"] / 1000, 2),
        "p99_ms": round(percentiles["99"] / 1000, 2),
        "p999_ms": round(percentiles["99.9"] / 1000, 2),
        "max_ms": round(raw["latency_us"]["max"] / 1000, 2),
        "mean_ms": round(raw["latency_us"]["mean"] / 1000, 2),
        "statuses": statuses,
        "non_2xx": non_2xx,
        "socket_errors": socket_errors,
        "error_count": non_2xx + sum(socket_errors.values()),
    }


# -- one run: a worker count ---------------------------------------------------------------------------


def measure(
    wrk: str, server: ApiServer, meter: CpuMeter, db_url: str, args: argparse.Namespace, tag: str
) -> dict[str, dict[str, Any]]:
    common = {"token": ADMIN_TOKEN, "ns_format": NS_FORMAT, "namespaces": args.namespaces}
    seeded = {**common, "name_format": NAME_FORMAT, "per_namespace": args.per_namespace}
    body = json.dumps(endpoint_body("__NAME__"), separators=(",", ":"))
    phases: list[tuple[str, str, dict[str, Any]]] = [
        ("get", "get.lua", seeded),
        ("list", "list.lua", common),
        ("update", "update.lua", seeded),
        ("create", "create.lua", {**common, "prefix": tag, "body": body}),
    ]
    results: dict[str, dict[str, Any]] = {}
    for phase, script, options in phases:
        if args.warmup > 0:
            warm = dict(options, prefix=f"{tag}w") if phase == "create" else options
            run_wrk(
                wrk,
                script=script,
                url=server.url,
                options=warm,
                duration=args.warmup,
                threads=args.threads,
                connections=args.clients,
            )
        before = meter.snapshot() if meter.available else None
        sessions_before = sessions_opened(db_url)
        raw = run_wrk(
            wrk,
            script=script,
            url=server.url,
            options=options,
            duration=args.duration,
            threads=args.threads,
            connections=args.clients,
        )
        results[phase] = summary = summarize(raw)
        # Connections the API opened meanwhile (ours, above and here, counted out): pool churn, if any.
        summary["db_connections_opened"] = max(0, sessions_opened(db_url) - sessions_before - 1)
        if before is not None:
            cpu = CpuMeter.delta(before, meter.snapshot())
            summary["cpu_s"] = cpu
            requests = max(1, summary["requests"])
            summary["api_cpu_ms_per_request"] = round(cpu["api"] * 1000 / requests, 3)
            summary["postgres_cpu_ms_per_request"] = round(cpu["postgres"] * 1000 / requests, 3)
        errors = f", {summary['error_count']} ERRORS {summary['statuses']} {summary['socket_errors']}"
        log(
            f"  {phase:6} {summary['rps']:8.1f} req/s  p50 {summary['p50_ms']:6.2f} ms  "
            f"p99 {summary['p99_ms']:7.2f} ms  ({summary['requests']} requests"
            f"{errors if summary['error_count'] else ''})"
        )
    return results


def goals(results: dict[str, dict[str, Any]]) -> dict[str, bool]:
    ok = {phase: r["error_count"] == 0 for phase, r in results.items()}
    met = {
        f"get_rps>={GOAL_GET_RPS}": ok["get"] and results["get"]["rps"] >= GOAL_GET_RPS,
        f"get_p99_ms<={GOAL_GET_P99_MS}": ok["get"] and results["get"]["p99_ms"] <= GOAL_GET_P99_MS,
        f"list_p99_ms<={GOAL_LIST_P99_MS}": ok["list"] and results["list"]["p99_ms"] <= GOAL_LIST_P99_MS,
        f"create_p99_ms<={GOAL_CREATE_P99_MS}": ok["create"] and results["create"]["p99_ms"] <= GOAL_CREATE_P99_MS,
        f"update_p99_ms<={GOAL_UPDATE_P99_MS}": ok["update"] and results["update"]["p99_ms"] <= GOAL_UPDATE_P99_MS,
        "no_errors": all(ok.values()),
    }
    met["all_met"] = all(met.values())
    return met


def flatten(workers: int, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    run: dict[str, Any] = {"workers": workers}
    for phase, r in results.items():
        for key in (
            "rps",
            "p50_ms",
            "p99_ms",
            "p90_ms",
            "p999_ms",
            "max_ms",
            "requests",
            "api_cpu_ms_per_request",
            "postgres_cpu_ms_per_request",
            "db_connections_opened",
        ):
            if key in r:
                run[f"{phase}_{key}"] = r[key]
    run["cpu_seconds_per_phase"] = {phase: r["cpu_s"] for phase, r in results.items() if "cpu_s" in r}
    run["errors"] = {
        phase: {"non_2xx": r["non_2xx"], "socket_errors": r["socket_errors"], "statuses": r["statuses"]}
        for phase, r in results.items()
    }
    run["error_count"] = sum(r["error_count"] for r in results.values())
    run["goals"] = goals(results)
    return run


# -- main -------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--workers", default="1,2", help="API worker counts to measure, comma-separated")
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--per-namespace", type=int, default=100, help="endpoints seeded in each namespace")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections (wrk -c)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (wrk -t)")
    parser.add_argument("--duration", type=float, default=12, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds before each phase")
    parser.add_argument("--seed-workers", type=int, default=2, help="API workers while seeding")
    args = parser.parse_args(argv)
    args.worker_counts = [int(x) for x in args.workers.split(",") if x.strip()]
    if args.per_namespace > 1000 or args.namespaces > 100:
        parser.error("at most 100 namespaces of 1000 endpoints (the names are bench-NN/ep-NNN)")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    wrk = require_wrk()
    busy_at_start = machine_busy_percent()
    if busy_at_start is not None and busy_at_start > 25:
        log(f"warning: the machine was {busy_at_start}% busy before we started: other work skews the figures")
    secret_key = Fernet.generate_key().decode()
    endpoints = args.namespaces * args.per_namespace
    with (
        tempfile.TemporaryDirectory(prefix="dais-bench-") as tmp,
        postgres_server() as server_url,
        HubServer() as hub,
    ):
        add_standard_models(hub)
        home = Path(tmp)
        log(f"postgres up at {server_url}; the local Hub at {hub.url}")
        postgres_port = int(server_url.rsplit(":", 1)[1].split("/", 1)[0])
        seed_url = create_database(server_url, SEED_DB)
        migrations.upgrade(seed_url)
        seed_started = time.monotonic()
        with api_server(
            seed_url, workers=args.seed_workers, secret_key=secret_key, home=home, hub_url=hub.url
        ) as server:
            log(f"seeding {endpoints} endpoints in {args.namespaces} namespaces through the API at {server.url}")
            seed(server.url, namespaces=args.namespaces, per_namespace=args.per_namespace, concurrency=args.clients)
        seed_seconds = time.monotonic() - seed_started
        check_seed(seed_url, endpoints=endpoints)
        vacuum(seed_url)
        log(f"seeded in {seed_seconds:.1f}s")

        runs = []
        for workers in args.worker_counts:
            db_url = copy_database(server_url, SEED_DB, f"dais_bench_w{workers}")
            with api_server(db_url, workers=workers, secret_key=secret_key, home=home, hub_url=hub.url) as server:
                log(f"measuring with {workers} API worker(s), {args.clients} clients, {args.duration:g}s per phase")
                meter = CpuMeter(server.pid, postgres_port)
                results = measure(wrk, server, meter, db_url, args, tag=f"w{workers}")
            runs.append(flatten(workers, results))

    best = max(runs, key=lambda r: r["get_rps"])
    return {
        "endpoints": endpoints,
        "namespaces": args.namespaces,
        "endpoints_per_namespace": args.per_namespace,
        "clients": args.clients,
        "load_generator": f"wrk -t {args.threads} -c {args.clients} (same machine)",
        "cpu_count": os.cpu_count(),
        "machine_busy_pct_before_start": busy_at_start,
        "phase_duration_s": args.duration,
        "warmup_s": args.warmup,
        "seed_method": "api",
        "seed_s": round(seed_seconds, 1),
        "seed_rps": round(endpoints / seed_seconds, 1),
        "runs": runs,
        "best_get_workers": best["workers"],
        "goals_met_with_workers": [r["workers"] for r in runs if r["goals"]["all_met"]],
        "errors_total": sum(r["error_count"] for r in runs),
        "warnings": warnings(runs, capacity_s=args.duration * (os.cpu_count() or 1)),
    }


def warnings(runs: list[dict[str, Any]], *, capacity_s: float) -> list[str]:
    """Figures a reader should not take at face value: errors, or CPU taken by work we did not start."""
    out = []
    for run in runs:
        if run["error_count"]:
            out.append(f"workers={run['workers']}: {run['error_count']} failed requests (see errors)")
        for phase, cpu in run["cpu_seconds_per_phase"].items():
            if cpu["other"] > 0.1 * capacity_s:
                out.append(
                    f"workers={run['workers']} {phase}: {cpu['other']}s of CPU went to processes this benchmark "
                    "did not start; figures are pessimistic"
                )
            busy = cpu["api_by_process"]
            if run["workers"] > 1 and cpu["api"] > 0 and busy and busy[0] > 0.8 * cpu["api"]:
                out.append(
                    f"workers={run['workers']} {phase}: one API process did {round(100 * busy[0] / cpu['api'])}% "
                    "of the work: uvicorn's workers share one listening socket and wrk's keep-alive connections "
                    "all landed on the same worker, so this phase measured about one worker"
                )
    return out


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through every `finally`, stopping what we started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        report = run(args)
    except BenchError as exc:
        print(f"benchmarks/api.py: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("benchmarks/api.py: interrupted; servers stopped", file=sys.stderr)
        return 130
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
