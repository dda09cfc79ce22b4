"""`dais api --workers N`: the supervisor deals connections to its workers in turn, and no worker outlives it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import httpx
import pytest

from tests.factories import ADMIN_TOKEN
from tests.fixtures.kube import wait_for
from tests.fixtures.postgres import free_port

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; SOCK_SEQPACKET")


WHOAMI = f"GET /api/whoami-v2 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n".encode()


class Supervisor:
    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def workers(self) -> list[int]:
        """The worker processes: the supervisor's children, less multiprocessing's resource tracker."""
        return [pid for pid in _children(self.process.pid) if b"resource_tracker" not in _cmdline(pid)]


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    port = free_port()
    env = {**os.environ, "DAIS_HOME": str(tmp_path), "DAIS_ADMIN_TOKEN": ADMIN_TOKEN, "DAIS_LOG_JSON": "false"}
    command = [sys.executable, "-m", "dais", "api", "--upgrade", "--port", str(port), "--workers", "2"]
    log = tmp_path / "api.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
    running = Supervisor(process, port)
    started: list[int] = []
    try:
        wait_for(lambda: _ready(running.url) or process.poll() is not None, timeout=60, what="dais api to answer")
        assert process.poll() is None, log.read_text()
        wait_for(lambda: len(running.workers()) == 2, timeout=30, what="two workers")
        started = running.workers()
        yield running
    finally:
        # Those seen at start too: after a supervisor's death its workers are no longer its children.
        workers = {*running.workers(), *started}
        process.kill()
        process.wait()
        for pid in workers:
            _kill_quietly(pid)


def test_keep_alive_connections_are_shared_evenly(supervisor: Supervisor) -> None:
    """Eight clients that each keep one connection: four per worker, every time (the kernel, left to itself,
    split them 5/3 or worse as often as 4/4). Each is answered by the app, from the database."""
    for _ in range(3):
        clients = [socket.create_connection(("127.0.0.1", supervisor.port)) for _ in range(8)]
        try:
            for client in clients:
                client.sendall(WHOAMI)
            for client in clients:
                head, body = _answer(client)
                assert head.startswith(b"HTTP/1.1 200 "), head
                assert b'"name":"admin"' in body
            mine = {client.getsockname()[1] for client in clients}
            served = sorted(len(_connections(pid, supervisor.port) & mine) for pid in supervisor.workers())
            assert served == [4, 4]
        finally:
            for client in clients:
                client.close()


def test_sigterm_stops_the_workers_and_exits_cleanly(supervisor: Supervisor) -> None:
    workers = supervisor.workers()
    supervisor.process.send_signal(signal.SIGTERM)
    assert supervisor.process.wait(timeout=30) == 0
    wait_for(lambda: not any(_alive(pid) for pid in workers), timeout=30, what="the workers to exit")


def test_workers_exit_when_the_supervisor_is_killed(supervisor: Supervisor) -> None:
    """A SIGKILLed supervisor leaves no orphans serving on: each worker reads end-of-file and exits."""
    workers = supervisor.workers()
    supervisor.process.kill()
    supervisor.process.wait()
    wait_for(lambda: not any(_alive(pid) for pid in workers), timeout=30, what="the orphaned workers to exit")


def _answer(client: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP/1.1 answer with a Content-Length, read whole: (head, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += client.recv(65536) or pytest.fail(f"connection closed after {data!r}")
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += client.recv(65536) or pytest.fail(f"connection closed after {data!r}")
    return head, body


# -- /proc ------------------------------------------------------------------------------------------------


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                out.append(int(entry))
    return out


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"  # a zombie has exited; only its parent's wait is missing


def _kill_quietly(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _connections(pid: int, port: int) -> set[int]:
    """Client ports of the established TCP connections to ``port`` whose sockets ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port and inode in inodes:
                ports.add(int(remote.rsplit(":", 1)[1], 16))
    return ports
