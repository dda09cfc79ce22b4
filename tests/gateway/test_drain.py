"""`dais gateway` drains on SIGTERM: readiness turns false, the public listener refuses new connections, idle
keep-alive connections close, a stream in flight finishes whole, and the process exits 0 once it has (or at
DAIS_GATEWAY__DRAIN_SECONDS, the stream cut; or at a second signal)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.fixtures.engine import FakeEngine
from tests.fixtures.kube import die_with_parent, wait_for
from tests.fixtures.postgres import free_port
from tests.gateway.conftest import Running
from tests.gateway.scripted import ScriptedUpstream
from tests.gateway.test_http import Reader


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    public: int
    internal: str
    log: Path

    def status(self, path: str) -> int | None:
        try:
            return httpx.get(f"{self.internal}{path}", timeout=2).status_code
        except httpx.TransportError:
            return None

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.public), timeout=10)


@pytest.fixture
def start(live_server: LiveServer, tmp_path: Path) -> Iterator[Callable[[float], Process]]:
    started: list[Process] = []

    def run(drain_seconds: float) -> Process:
        public, internal = free_port(), free_port()
        env = {
            **os.environ,
            "DAIS_DATABASE_URL": live_server.settings.effective_database_url,
            "DAIS_GATEWAY__LISTEN": f"127.0.0.1:{public}",
            "DAIS_GATEWAY__INTERNAL_LISTEN": f"127.0.0.1:{internal}",
            "DAIS_GATEWAY__DRAIN_SECONDS": str(drain_seconds),
            "DAIS_LOG_JSON": "false",
        }
        log = tmp_path / f"gateway-{len(started)}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "dais", "gateway"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(os.getpid()),
            )
        process = Process(popen, public, f"http://127.0.0.1:{internal}", log)
        started.append(process)
        wait_for(lambda: process.status("/readyz") == 200, timeout=30, what="dais gateway to start (see its log)")
        return process

    yield run
    for process in started:
        if process.popen.poll() is None:
            process.popen.kill()
            process.popen.wait(timeout=10)


@dataclass
class Held:
    upstream: ScriptedUpstream  # its /hold stream ends on release()
    path: str  # the endpoint's, /admin/{name}


@pytest.fixture
def held(gateway: Running, engine: FakeEngine, request: pytest.FixtureRequest) -> Iterator[Held]:
    """An endpoint named for the test, served by a scripted upstream."""
    with ScriptedUpstream() as scripted:
        name = "drain-" + request.node.name.removeprefix("test_")[:20].replace("_", "-").strip("-")
        ident = gateway.create(name)
        gateway.set_status(ident, engines=[engine], addresses=[scripted.address], upstream=scripted.url)
        yield Held(scripted, f"/admin/{name}")


def begin_stream(process: Process, held: Held) -> tuple[socket.socket, Reader]:
    wait_for(
        lambda: httpx.get(f"http://127.0.0.1:{process.public}{held.path}/ok", timeout=5).status_code == 200,
        timeout=30,
        what="the endpoint routed by the process",
    )
    sock = process.connect()
    sock.sendall(b"GET %s/hold HTTP/1.1\r\nHost: x\r\n\r\n" % held.path.encode())
    reader = Reader(sock)
    status, _, _ = reader.response(head_only=True)
    assert status == 200
    wait_for(lambda: held.upstream.held == 1, timeout=10, what="the stream begun upstream")
    return sock, reader


def rest_of(sock: socket.socket, reader: Reader) -> bytes:
    """Everything the gateway sends until it closes the connection (or cuts it)."""
    received = reader.buffer
    with contextlib.suppress(ConnectionResetError):
        while data := sock.recv(65536):
            received += data
    return received


def test_a_stream_in_flight_finishes_whole_and_the_gateway_exits_when_it_ends(
    start: Callable[[float], Process], held: Held
) -> None:
    process = start(600)  # the exit below comes long before this deadline, or the test times out
    idle = process.connect()
    idle.sendall(b"GET %s/ok HTTP/1.1\r\nHost: x\r\n\r\n" % held.path.encode())
    idle_reader = Reader(idle)
    assert idle_reader.response()[0] == 200  # and the connection stays open, kept alive
    stream, reader = begin_stream(process, held)

    process.popen.send_signal(signal.SIGTERM)
    wait_for(lambda: process.status("/readyz") == 503, timeout=10, what="readiness off")
    assert process.status("/healthz") == 200  # alive: draining is no reason to restart it
    with pytest.raises(ConnectionRefusedError):
        process.connect()
    assert idle_reader.closed()
    assert process.popen.poll() is None  # the stream holds it

    held.upstream.release()
    body = rest_of(stream, reader)
    assert b"data: first" in body
    assert body.endswith(b"0\r\n\r\n")  # whole: its last chunk, then the close
    assert b"data: last" in body
    assert process.popen.wait(timeout=60) == 0
    log = process.log.read_text()
    assert "gateway draining: 1 requests in flight" in log, log
    assert "1 requests finished, 0 cut" in log, log


def test_a_stream_that_outlasts_the_drain_is_cut_and_the_gateway_exits(
    start: Callable[[float], Process], held: Held
) -> None:
    process = start(1)
    stream, reader = begin_stream(process, held)
    process.popen.send_signal(signal.SIGTERM)
    assert process.popen.wait(timeout=60) == 0
    body = rest_of(stream, reader)
    assert b"data: first" in body
    assert not body.endswith(b"0\r\n\r\n")  # cut, not ended
    assert held.upstream.finished == 0
    log = process.log.read_text()
    assert "0 requests finished, 1 cut" in log, log


def test_a_second_signal_cuts_the_drain_short(start: Callable[[float], Process], held: Held) -> None:
    process = start(600)
    stream, reader = begin_stream(process, held)
    process.popen.send_signal(signal.SIGTERM)
    wait_for(lambda: process.status("/readyz") == 503, timeout=10, what="readiness off")
    process.popen.send_signal(signal.SIGINT)
    assert process.popen.wait(timeout=60) == 0
    assert not rest_of(stream, reader).endswith(b"0\r\n\r\n")
    assert "0 requests finished, 1 cut" in process.log.read_text()
