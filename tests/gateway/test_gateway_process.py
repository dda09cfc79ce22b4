"""`dais gateway` as its own process on PostgreSQL, as it runs in production: it routes, exports metrics on
its internal listener only, stops cleanly on SIGTERM with its last activity written, and refuses SQLite."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.db.models import EndpointActivity
from gateway import native
from tests.conftest import LiveServer
from tests.fixtures.engine import FakeEngine
from tests.fixtures.kube import die_with_parent, wait_for
from tests.fixtures.postgres import free_port
from tests.gateway.conftest import Running

DAIS = [sys.executable, "-m", "dais"]


@pytest.fixture(params=["compiled", "plain"])
def process(
    live_server: LiveServer, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[subprocess.Popen[bytes], str, str, Path]]:
    """The gateway as a process, its request path compiled (as ``make`` builds it) or as plain Python."""
    public, internal = free_port(), free_port()
    env = {
        **os.environ,
        "DAIS_GATEWAY_NATIVE": "1" if request.param == "compiled" else "0",
        "DAIS_DATABASE_URL": live_server.settings.effective_database_url,
        "DAIS_GATEWAY__LISTEN": f"127.0.0.1:{public}",
        "DAIS_GATEWAY__INTERNAL_LISTEN": f"127.0.0.1:{internal}",
        "DAIS_LOG_JSON": "false",
    }
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        started = subprocess.Popen(
            [*DAIS, "gateway"], env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent(os.getpid())
        )
    yield started, f"http://127.0.0.1:{public}", f"http://127.0.0.1:{internal}", log
    if started.poll() is None:
        started.kill()
        started.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_the_gateway_process_routes_counts_and_stops_cleanly(
    process: tuple[subprocess.Popen[bytes], str, str, Path],
    gateway: Running,
    engine: FakeEngine,
    request: pytest.FixtureRequest,
) -> None:
    popen, public, internal, log = process
    mode = request.node.callspec.params["process"]
    name = f"as-process-{mode}"  # the two modes may share a database
    ident = gateway.create(name)
    gateway.set_status(ident, engines=[engine])
    wait_for(lambda: _answers(f"{internal}/readyz"), timeout=30, what="dais gateway to start (see gateway.log)")
    wait_for(lambda: _answers(f"{public}/admin/{name}/health"), timeout=30, what="the endpoint routed")
    # Compiled when asked and built for this source (make builds it; this process then runs compiled too).
    compiled = mode == "compiled" and native.active()
    assert f"gateway request path: {'compiled (mypyc)' if compiled else 'plain Python'}" in log.read_text()
    answer = httpx.post(f"{public}/admin/{name}/generate", json={"inputs": "hi", "parameters": {"max_new_tokens": 2}})
    assert answer.status_code == 200
    assert f'endpoint="admin/{name}"' in httpx.get(f"{internal}/metrics").text
    assert httpx.get(f"{public}/metrics").status_code == 404

    popen.send_signal(signal.SIGTERM)
    assert popen.wait(timeout=30) == 0, log.read_text()
    with gateway.live.sessions() as session:
        row = session.get(EndpointActivity, (ident, socket.gethostname()))
        assert row is not None
        assert row.last_request_at is not None
        assert row.in_flight == 0


def test_the_gateway_process_refuses_sqlite(tmp_path: Path) -> None:
    env = {**os.environ, "DAIS_HOME": str(tmp_path)}
    env.pop("DAIS_DATABASE_URL", None)
    refused = subprocess.run([*DAIS, "gateway"], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "PostgreSQL" in refused.stderr
