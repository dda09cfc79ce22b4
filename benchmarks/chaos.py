"""Chaos under load: what clients see while each Dais component is killed with SIGKILL and started again.

Run from the repository root: ``.venv/bin/python benchmarks/chaos.py [--rounds N] [--clients N]``. Needs the
PostgreSQL server binaries (``make system-deps``) and the local runtime's engine (``dais engine``, llama.cpp).

What it does (tests/fixtures/chaos.py, which a test runs once, briefly):

1. starts a throw-away PostgreSQL, a local Hub serving two tiny GGUF models made on the spot, and ``dais api``,
   ``dais controller`` (the local runtime: its ``dais engine`` children serve the models), ``dais autoscaler``
   and ``dais gateway`` as separate processes on one database and one ``DAIS_HOME``;
2. deploys two endpoints (``alpha`` and ``beta``, each answering with its own model's name, so a misrouted
   answer shows) and a few paused spares;
3. ``--clients`` threads send chat completions through the gateway (honouring Retry-After, at most 1 s), and a
   writer writes through the API once per few answers: tokens, the spares' tags, resume and pause, new spares;
4. after a steady phase, kills the API, the controller, the autoscaler and the gateway in turn (``--rounds``
   times), each started again at once; a component is "down" until its health route answers 200, then "back"
   until every endpoint has answered ``--settle`` more requests;
5. reads back what every acknowledged write wrote: the spares' specs, the tokens (each must authenticate) and
   the audit events (by request id).

The rules (issue 20): requests fail only while the gateway itself is down, or with a 503 and Retry-After; nothing
is misrouted; ``acknowledged_writes_lost`` is 0. ``rules_met`` says whether the run kept them;
``requests_failed_outside_rules_by_phase`` and ``failure_examples`` say where and how it did not.

Stdout: exactly one JSON object. Progress goes to stderr. Everything started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import migrations  # noqa: E402
from tests.fixtures.chaos import chaos_cluster, run_chaos, tails  # noqa: E402
from tests.fixtures.postgres import create_database, postgres_server  # noqa: E402

STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="times each component is killed")
    parser.add_argument("--clients", type=int, default=4, help="client threads sending requests")
    parser.add_argument("--settle", type=int, default=50, help="answers per endpoint that end a steady phase")
    parser.add_argument("--api-workers", type=int, default=1, help="dais api --workers")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dais-bench-chaos-") as tmp, postgres_server() as server:
        database_url = create_database(server, "chaos")
        migrations.upgrade(database_url)
        log("starting dais api, controller, autoscaler and gateway; deploying")
        with chaos_cluster(database_url, Path(tmp), api_workers=args.api_workers) as cluster:
            log(f"serving; {args.rounds} round(s) of kills under {args.clients} clients")
            try:
                report = run_chaos(cluster, clients=args.clients, rounds=args.rounds, settle=args.settle, progress=log)
            except BaseException:
                print(tails(cluster), file=sys.stderr)
                raise
    summary = report.summary()
    result: dict[str, Any] = {
        "clients": args.clients,
        "rounds": args.rounds,
        "settle_answers_per_endpoint": args.settle,
        "api_workers": args.api_workers,
        "duration_s": round(time.monotonic() - STARTED, 1),
        **summary,
        "rules_met": not summary["requests_failed_outside_rules_by_phase"]
        and not summary["requests_misrouted"]
        and not summary["acknowledged_writes_lost"],
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
