"""The local runtime's hardware figures for the metric history: its replica processes measured from /proc."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.local import LocalRuntime, _Replica, process_use
from tests.fixtures.kube import wait_for

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")

BUSY = "import time\nbuf = bytearray(64 << 20)\nwhile True:\n    sum(range(10000))\n"


@pytest.fixture
def busy() -> Iterator[subprocess.Popen[bytes]]:
    """A process that keeps one core busy and holds 64 MiB."""
    process = subprocess.Popen([sys.executable, "-c", BUSY])
    yield process
    process.kill()
    process.wait()


def test_a_process_cpu_time_and_resident_memory(busy: subprocess.Popen[bytes]) -> None:
    first = process_use(busy.pid)
    assert first is not None
    later = wait_for(
        lambda: (u := process_use(busy.pid)) is not None and u[0] >= first[0] + 0.2 and u,
        timeout=10,
        what="the process to use CPU",
    )
    assert later[1] > 64 << 20
    busy.kill()
    busy.wait()
    assert process_use(busy.pid) is None, "gone"


def test_usage_sums_an_endpoints_running_replicas(tmp_path: Path, busy: subprocess.Popen[bytes]) -> None:
    runtime = LocalRuntime(
        home=tmp_path, hub_url=None, startup_deadline_seconds=60, clock=lambda: datetime.now(UTC), notify=print
    )
    replica = _Replica(
        id="r1",
        endpoint_id="e1",
        digest="d",
        command=[],
        env={},
        health_route="/health",
        log_path=tmp_path / "r1.log",
        process=busy,
    )
    stopped = _Replica(
        id="r2", endpoint_id="e1", digest="d", command=[], env={}, health_route="/", log_path=tmp_path / "r2.log"
    )
    runtime._replicas["e1"] = [replica, stopped]
    assert runtime.usage() == {}, "a replica seen once has no rate yet"
    started = time.monotonic()
    wait_for(lambda: time.monotonic() - started > 0.5, timeout=2, what="half a second of work")
    use = runtime.usage()["e1"]
    assert use.replicas == 1
    assert 0.5 < use.cpu_cores < 1.5  # one busy core
    assert use.memory_bytes > 64 << 20
