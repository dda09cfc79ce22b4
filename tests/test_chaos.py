"""Chaos under load (issue 20): with requests flowing through the gateway to real engines (the local runtime)
and writes flowing through the API, `dais api`, `dais controller`, `dais autoscaler` and `dais gateway` are
each killed with SIGKILL and started again. Requests fail only while the gateway itself is down, or with a 503
and Retry-After; nothing is misrouted; no acknowledged endpoint spec, token or audit event is lost.
benchmarks/chaos.py runs the same for longer and prints the tally."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import migrations
from tests.fixtures.chaos import chaos_cluster, run_chaos, tails
from tests.fixtures.dais_serve import engine_pids
from tests.fixtures.postgres import create_database

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the local runtime's engines: Linux")


def test_killing_each_component_under_load_fails_no_request_outside_the_rules_and_loses_no_write(
    pg_server: str, tmp_path: Path
) -> None:
    url = create_database(pg_server, "dais_chaos")
    migrations.upgrade(url)
    with chaos_cluster(url, tmp_path) as cluster:
        report = run_chaos(cluster, clients=2, rounds=1, settle=10)
        logs = tails(cluster)
    tally = report.summary()
    assert tally["writes_acknowledged"] > 0
    assert report.misrouted() == 0, f"{tally}\n{logs}"
    assert report.outside_rules() == {}, f"{tally['failure_examples']}\n{tally}\n{logs}"
    assert report.lost == [], f"{tally}\n{logs}"
    assert not engine_pids(tmp_path), "an engine process outlived its controller"
