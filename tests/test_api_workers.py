"""`dais api --workers N`: the supervisor deals connections to its workers in turn, restarts a worker that
dies while the others serve, drains on SIGTERM (as `dais api` alone does), and no worker outlives it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest

from tests.factories import ADMIN_TOKEN
from tests.fixtures.kube import free_ports, wait_for
from tests.fixtures.postgres import free_port

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; SOCK_SEQPACKET")


AUTH = f"Host: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
WHOAMI = f"GET /api/whoami-v2 HTTP/1.1\r\n{AUTH}\r\n".encode()
# The live feed of namespace admin: a server-sent stream that lasts until the client or the server ends it.
SERVES = re.compile(r"worker \d+ serves")  # the supervisor's line when a worker starts to serve
WATCH = f"GET /v2/endpoint/admin?watch=true HTTP/1.1\r\n{AUTH}Connection: close\r\n\r\n".encode()


class Api:
    def __init__(self, process: subprocess.Popen[str], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    def workers(self) -> list[int]:
        """The worker processes: the supervisor's children, less multiprocessing's resource tracker."""
        return [pid for pid in _children(self.process.pid) if b"resource_tracker" not in _cmdline(pid)]

    def logged(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serving(home: Path, *, workers: int, env: dict[str, str] | None = None, command: str = "api") -> Iterator[Api]:
    """``dais api`` (or ``dais serve``) on a SQLite file in ``home``, answering /readyz, with its ``workers``
    processes running."""
    port = free_port()
    env = {
        **os.environ,
        "DAIS_HOME": str(home),
        "DAIS_ADMIN_TOKEN": ADMIN_TOKEN,
        "DAIS_LOG_JSON": "false",
        "DAIS_ACCESS_LOG": "false",
        **(env or {}),
    }
    argv = [sys.executable, "-m", "dais", command, "--port", str(port), "--workers", str(workers)]
    if command == "api":
        argv.append("--upgrade")
    log = home / "api.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(argv, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
    running = Api(process, port, log)
    started: list[int] = []
    try:
        wait_for(lambda: _ready(running.url) or process.poll() is not None, timeout=90, what="dais api to answer")
        assert process.poll() is None, running.logged()
        if workers > 1:
            wait_for(lambda: len(running.workers()) == workers, timeout=60, what=f"{workers} workers")
            wait_for(lambda: len(SERVES.findall(running.logged())) == workers, timeout=60, what="every worker to serve")
        started = running.workers()
        yield running
    finally:
        # Those seen at start too: after a supervisor's death its workers are no longer its children.
        pids = {*running.workers(), *started}
        process.kill()
        process.wait()
        for pid in pids:
            _kill_quietly(pid)


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Api]:
    with serving(tmp_path, workers=2) as running:
        yield running


def test_keep_alive_connections_are_shared_evenly(supervisor: Api) -> None:
    """Eight clients that each keep one connection: four per worker, every time (the kernel, left to itself,
    split them 5/3 or worse as often as 4/4). Each is answered by the app, from the database."""
    for _ in range(3):
        clients = [_connect(supervisor.port) for _ in range(8)]
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


def test_a_killed_worker_is_replaced_while_the_other_serves_on(supervisor: Api) -> None:
    """kill -9 one of two workers while clients keep asking: those on the other worker see no failure, new
    connections go to the live worker only, and a new worker takes the dead one's place."""
    clients = [_connect(supervisor.port) for _ in range(4)]
    for client in clients:  # one request each: each connection is now held by the worker that answered it
        client.sendall(WHOAMI)
        _answer(client)
    victim, survivor = supervisor.workers()
    theirs = _connections(survivor, supervisor.port)
    steady = _Steady([c for c in clients if c.getsockname()[1] in theirs])
    assert len(steady.clients) == 2
    steady.start()
    try:
        wait_for(lambda: steady.answered >= 10, timeout=30, what="the steady requests to flow")
        os.kill(victim, signal.SIGKILL)
        # Once the supervisor has seen the death (its channel closed when the last of its threads died), it
        # deals nothing more there; a connection dealt just before is lost with the worker.
        wait_for(lambda: "was killed by SIGKILL" in supervisor.logged(), timeout=30, what="the supervisor to notice")
        at_death = steady.answered
        for _ in range(6):  # dealt only to the live worker (and to the new one, once it serves)
            with _connect(supervisor.port) as fresh:
                fresh.sendall(WHOAMI)
                assert _answer(fresh)[0].startswith(b"HTTP/1.1 200 ")
        wait_for(lambda: "serves again" in supervisor.logged(), timeout=90, what="a new worker to serve")
        (new,) = set(supervisor.workers()) - {victim, survivor}
        wait_for(lambda: _answered_by(supervisor, new), timeout=30, what="a request answered by the new worker")
        wait_for(lambda: steady.answered > at_death, timeout=30, what="the steady requests to go on")
    finally:
        steady.stop()
        for client in clients:
            client.close()
    assert steady.failures == []


def test_a_worker_that_cannot_start_is_retried_with_growing_delays(supervisor: Api, tmp_path: Path) -> None:
    """A worker whose replacement fails at start (here: the secret key file went bad) is started again after
    1 s, 2 s, ... (never in a tight loop), the log says so, the other worker serves throughout, and once the
    cause is fixed the next start serves."""
    key = tmp_path / "secret.key"
    good = key.read_text()
    key.write_text("not a Fernet key\n")
    victim, survivor = supervisor.workers()
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: "2 time(s) in a row" in supervisor.logged(), timeout=120, what="two failed starts")
    failed = [line for line in supervisor.logged().splitlines() if "before it served" in line]
    assert "1 time(s) in a row" in failed[0]
    assert "the next start in 1 s" in failed[0]
    assert "the next start in 2 s" in failed[1]
    assert "DAIS_SECRET_KEY is not a Fernet key" in supervisor.logged()  # the worker's own error, for the operator
    assert _answered_by(supervisor, survivor)
    key.write_text(good)
    wait_for(lambda: "serves again" in supervisor.logged(), timeout=120, what="a started worker to serve")
    assert len(supervisor.workers()) == 2


@pytest.mark.parametrize(("command", "workers"), [("api", 1), ("api", 2), ("serve", 1)])
def test_sigterm_drains_then_exits_0(tmp_path: Path, command: str, workers: int) -> None:
    """On SIGTERM: /readyz answers 503 while connections are still taken (DAIS_API__UNREADY_SECONDS), the live
    feed's stream ends cleanly, the listener closes, a request in flight (a slow upload) is still answered,
    and then the process exits 0. `dais serve` (with its gateway and autoscaler in-process) drains its API alike."""
    public, internal = free_ports(2)
    env = {
        "DAIS_API__UNREADY_SECONDS": "5",
        "DAIS_CONTROLLER__RUNTIME": "none",
        "DAIS_GATEWAY__LISTEN": f"127.0.0.1:{public}",
        "DAIS_GATEWAY__INTERNAL_LISTEN": f"127.0.0.1:{internal}",
    }
    with serving(tmp_path, workers=workers, env=env, command=command) as api:
        feed = _connect(api.port)
        feed.sendall(WATCH)
        head = _head(feed)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"text/event-stream" in head
        body = b'{"name": "drained"}'
        upload = _connect(api.port)
        upload.sendall(
            f"POST /api/tokens HTTP/1.1\r\n{AUTH}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:5]
        )
        holders = api.workers() or [api.process.pid]
        port = upload.getsockname()[1]
        wait_for(
            lambda: any(port in _connections(pid, api.port) for pid in holders),
            timeout=30,
            what="the upload's connection to reach its server",
        )
        api.process.send_signal(signal.SIGTERM)
        wait_for(lambda: _status(f"{api.url}/readyz") == 503, timeout=30, what="/readyz to answer 503")
        assert _read_to_end(feed).endswith(b"\r\n0\r\n\r\n")  # the chunked stream's last chunk: a clean end
        wait_for(lambda: _refused(api.port), timeout=30, what="the listener to close")
        assert api.process.poll() is None  # the upload holds it
        upload.sendall(body[5:])
        head, answer = _answer(upload)
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert b'"token"' in answer
        assert api.process.wait(timeout=60) == 0
        wait_for(lambda: not any(_alive(pid) for pid in holders), timeout=30, what="the workers to exit")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_second_sigterm_closes_the_listener_without_waiting_out_the_unready_time(
    tmp_path: Path, workers: int
) -> None:
    env = {"DAIS_API__UNREADY_SECONDS": "3600", "DAIS_CONTROLLER__RUNTIME": "none"}
    with serving(tmp_path, workers=workers, env=env) as api:
        api.process.send_signal(signal.SIGTERM)
        wait_for(lambda: _status(f"{api.url}/readyz") == 503, timeout=30, what="/readyz to answer 503")
        assert api.process.poll() is None  # an hour of accepting is left
        api.process.send_signal(signal.SIGTERM)
        assert api.process.wait(timeout=60) == 0, api.logged()


def test_workers_exit_when_the_supervisor_is_killed(supervisor: Api) -> None:
    """A SIGKILLed supervisor leaves no orphans serving on: each worker reads end-of-file and exits."""
    workers = supervisor.workers()
    supervisor.process.kill()
    supervisor.process.wait()
    wait_for(lambda: not any(_alive(pid) for pid in workers), timeout=30, what="the orphaned workers to exit")


class _Steady:
    """Requests one after another on each of a few keep-alive connections, from a thread, until stopped."""

    def __init__(self, clients: list[socket.socket]) -> None:
        self.clients = clients
        self.answered = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            for client in self.clients:
                try:
                    client.sendall(WHOAMI)
                    head, _ = _answer(client)
                except OSError as exc:
                    self.failures.append(repr(exc))
                    return
                if not head.startswith(b"HTTP/1.1 200 "):
                    self.failures.append(head.decode(errors="replace"))
                self.answered += 1


def _answered_by(api: Api, pid: int) -> bool:
    """A new connection's request, answered; True when worker ``pid`` answered it."""
    with _connect(api.port) as client:
        client.sendall(WHOAMI)
        assert _answer(client)[0].startswith(b"HTTP/1.1 200 ")
        return client.getsockname()[1] in _connections(pid, api.port)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)  # a read that never ends fails the test


def _head(client: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += client.recv(1) or _closed(data)
    return data


def _answer(client: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP/1.1 answer with a Content-Length, read whole: (head, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += client.recv(65536) or _closed(data)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += client.recv(65536) or _closed(data)
    return head, body


def _closed(data: bytes) -> bytes:
    raise ConnectionError(f"connection closed after {data!r}")


def _read_to_end(client: socket.socket) -> bytes:
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    return data


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return None


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


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
