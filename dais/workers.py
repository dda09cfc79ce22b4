"""``dais api --workers N``: N uvicorn processes behind one listening socket, with connections dealt to them
in turn by this supervisor, as Node's cluster module does.

Why not let each worker accept: with a shared or an SO_REUSEPORT socket the kernel decides, and a few
long-lived keep-alive clients split unevenly (16 connections landed 5/11 as often as 8/8 on two workers); the
busier worker's requests then wait up to twice as long, and the p99 of a run depended on that luck. Here the
supervisor accepts, and passes each connection's file descriptor to the next worker over a Unix socket
(SCM_RIGHTS); the worker adopts it into its event loop as if it had accepted it itself.

Each worker's channel carries one-byte messages both ways. To the worker: a connection (``c`` with its
descriptor), or ``d``: drain (/readyz answers 503, server-sent streams end). From the worker: ``r``, it
serves; ``x``, it stops by itself (it was sent SIGTERM). Connections are dealt only to workers that said ``r``
and not ``x``, so none goes to a worker that is starting, stopping or dead; while none is ready they wait in
the listen backlog.

A worker that dies is started again after a delay that doubles from 0.5 s to 30 s while workers keep dying,
and starts from 0.5 s again once one served ``STABLE_S``; the others serve throughout. One that dies before it
serves is started again the same way, never in a tight loop, and the log says how many times in a row.

SIGTERM/SIGINT: the supervisor sends ``d`` to every worker, keeps dealing for ``DAIS_API__UNREADY_SECONDS``,
closes the listener, then closes the channels: each worker reads end-of-file, finishes its requests within
``DAIS_API__DRAIN_SECONDS`` (``DrainingServer``) and exits; then the supervisor exits 0.

Linux (``SOCK_SEQPACKET``): a worker reads end-of-file when the supervisor dies, and exits.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import selectors
import signal
import socket
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import uvicorn

from dais.drain import DrainingServer

log = logging.getLogger("dais.api")

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0
STABLE_S = 30.0  # a worker that served this long died of something new: the next restart is quick again
EXIT_MARGIN_S = 10.0  # past the drain time, for a worker's lifespan to end; then it is killed

# A worker process's app and what starts its drain (``AppState.drain``): built in the worker, from the
# environment. A function of a module, so that the spawned process can import it.
AppFactory = Callable[[], tuple[Any, Callable[[], None]]]


def listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def run(
    host: str, port: int, count: int, app_factory: AppFactory, *, drain_seconds: int, unready_seconds: float = 0
) -> int:
    """Serves until SIGTERM/SIGINT, restarting workers that die; then drains (above). 0."""
    supervisor = _Supervisor(listen(host, port), count, app_factory, drain_seconds=drain_seconds)
    log.info("dais api on http://%s:%d with %d workers", f"[{host}]" if ":" in host else host, port, count)
    return supervisor.serve(unready_seconds)


@dataclass(eq=False)
class _Slot:
    """One of the N places for a worker: the process in it now, its channel, and its restart delay."""

    index: int
    process: BaseProcess | None = None
    channel: socket.socket | None = None  # the supervisor's end; None while no process runs
    started_at: float = 0.0
    ready_at: float | None = None  # when it said ``r``
    ready: bool = False  # connections may be dealt to it
    delay: float = FIRST_DELAY_S  # before the next start, should this one die
    failures: int = 0  # deaths in a row before serving
    restart_at: float | None = None
    starts: int = 0


class _Supervisor:
    def __init__(self, listener: socket.socket, count: int, app_factory: AppFactory, *, drain_seconds: int) -> None:
        self.listener = listener
        self.listener.setblocking(False)
        self.app_factory = app_factory
        self.drain_seconds = drain_seconds
        self.context = multiprocessing.get_context("spawn")
        self.selector = selectors.DefaultSelector()
        self.slots = [_Slot(index) for index in range(count)]
        self.turn = 0
        self.accepting = False
        self.signalled = False
        self.hurried = False  # a second signal: no more waiting before the listener closes
        # A signal writes to ``wake`` (set_wakeup_fd), so that the select returns at once.
        self.wake, self.wake_signal = socket.socketpair()

    def serve(self, unready_seconds: float) -> int:
        for end in (self.wake, self.wake_signal):
            end.setblocking(False)
        self.selector.register(self.wake, selectors.EVENT_READ)
        previous_fd = signal.set_wakeup_fd(self.wake_signal.fileno())
        previous = {signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in self.slots:
                self._start(slot)
            while not self.signalled:
                self._step(timeout=self._next_restart())
            log.info("draining: /readyz answers 503; the listener closes in %g s", unready_seconds)
            for slot in self.slots:
                slot.restart_at = None
                self._send(slot, b"d")
            close_at = time.monotonic() + unready_seconds
            while not self.hurried and (left := close_at - time.monotonic()) > 0:
                self._step(timeout=left)
            self._stop_workers()
        finally:
            self.listener.close()
            signal.set_wakeup_fd(previous_fd)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.selector.close()
            self.wake.close()
            self.wake_signal.close()
        return 0

    def _on_signal(self, _sig: int, _frame: FrameType | None) -> None:
        self.hurried = self.signalled
        self.signalled = True

    def _next_restart(self) -> float | None:
        due = [slot.restart_at for slot in self.slots if slot.restart_at is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _step(self, timeout: float | None) -> None:
        """Waits for a connection, a worker's message or death, a signal or a restart's time; handles it."""
        self._accept_while_ready()
        for key, _events in self.selector.select(timeout):
            if key.fileobj is self.listener:
                self._accept()
            elif key.fileobj is self.wake:  # a signal: its bytes only end the wait
                with suppress(BlockingIOError):
                    while self.wake.recv(64):
                        pass
            else:
                self._hear(key.data)
        now = time.monotonic()
        for slot in self.slots:
            if slot.restart_at is not None and slot.restart_at <= now and not self.signalled:
                self._start(slot)

    def _accept_while_ready(self) -> None:
        """The listener is watched only while some worker is ready: otherwise connections wait in the backlog."""
        wanted = any(slot.ready for slot in self.slots) and self.listener.fileno() != -1
        if wanted != self.accepting:
            if wanted:
                self.selector.register(self.listener, selectors.EVENT_READ)
            else:
                self.selector.unregister(self.listener)
            self.accepting = wanted

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            with connection:
                self._deal(connection)
            if not any(slot.ready for slot in self.slots):
                return

    def _deal(self, connection: socket.socket) -> None:
        """Passes the connection to the ready worker whose turn it is, or to the next one whose queue has room.
        A connection no worker can take is closed (the client sees a reset and may retry)."""
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        count = len(self.slots)
        for step in range(count):
            slot = self.slots[(self.turn + step) % count]
            if not slot.ready or slot.channel is None:
                continue
            try:
                socket.send_fds(slot.channel, [b"c"], [connection.fileno()])
            except BlockingIOError:
                continue  # that worker's queue is full
            except OSError:
                slot.ready = False  # it is gone: its channel's end-of-file is heard next
                continue
            self.turn = (slot.index + 1) % count
            return

    def _hear(self, slot: _Slot) -> None:
        assert slot.channel is not None
        try:
            message = slot.channel.recv(1)
        except BlockingIOError:
            return
        except OSError:
            message = b""
        if message == b"r":
            slot.ready, slot.ready_at, slot.failures = True, time.monotonic(), 0
            again = " again" if slot.starts > 1 else ""
            log.info("worker %d serves%s (pid %s)", slot.index, again, slot.process and slot.process.pid)
        elif message == b"x":
            slot.ready = False
        else:
            self._reap(slot)

    def _start(self, slot: _Slot) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        process = self.context.Process(
            target=_worker, args=(theirs, self.app_factory, self.drain_seconds), name=f"dais-api-{slot.index}"
        )
        process.start()
        theirs.close()
        ours.setblocking(False)
        slot.process, slot.channel, slot.started_at = process, ours, time.monotonic()
        slot.ready, slot.ready_at, slot.restart_at = False, None, None
        slot.starts += 1
        self.selector.register(ours, selectors.EVENT_READ, slot)

    def _reap(self, slot: _Slot) -> None:
        """The worker closed its channel: it died, or exited. Its slot starts a new one after its delay."""
        assert slot.channel is not None
        assert slot.process is not None
        self.selector.unregister(slot.channel)
        slot.channel.close()
        slot.channel, slot.ready = None, False
        process, slot.process = slot.process, None
        process.join(timeout=5)
        if process.is_alive():  # it closed its channel yet runs on: it can be dealt nothing, so stop it
            process.kill()
            process.join()
        pid, why = process.pid, _why(process.exitcode)
        process.close()
        now = time.monotonic()
        if self.signalled:
            log.warning("worker %d (pid %s) %s while draining", slot.index, pid, why)
            return
        if slot.ready_at is not None and now - slot.ready_at >= STABLE_S:
            slot.delay = FIRST_DELAY_S
        delay, slot.delay = slot.delay, min(slot.delay * 2, MAX_DELAY_S)
        slot.restart_at = now + delay
        if slot.ready_at is None:
            slot.failures += 1
            log.error(
                "worker %d (pid %s) %s before it served, %d time(s) in a row (its error is above); "
                "the next start in %g s; the other workers serve meanwhile",
                *(slot.index, pid, why, slot.failures, delay),
            )
        else:
            log.warning(
                "worker %d (pid %s) %s after %.0f s; a new one starts in %g s; the other workers serve meanwhile",
                *(slot.index, pid, why, now - slot.started_at, delay),
            )

    def _send(self, slot: _Slot, message: bytes) -> None:
        if slot.channel is not None:
            with suppress(OSError):  # gone or full: closing the channel stops it all the same
                slot.channel.send(message)

    def _stop_workers(self) -> None:
        """Closes the listener, then every channel: each worker finishes its requests and exits."""
        if self.accepting:
            self.selector.unregister(self.listener)
            self.accepting = False
        self.listener.close()
        deadline = time.monotonic() + self.drain_seconds + EXIT_MARGIN_S
        for slot in self.slots:
            if slot.channel is not None:
                self.selector.unregister(slot.channel)
                slot.channel.close()
                slot.channel = None
        for slot in self.slots:
            if slot.process is None:
                continue
            slot.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                log.error("worker %d (pid %s) did not exit in time: killed", slot.index, slot.process.pid)
                slot.process.kill()
                slot.process.join()


def _why(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"was killed by {signal.Signals(-exitcode).name}"
    return f"exited with status {exitcode}"


def _worker(channel: socket.socket, app_factory: AppFactory, drain_seconds: int) -> None:
    app, drain = app_factory()
    config = uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=drain_seconds)
    _HandedServer(config, channel, drain=drain).run()


class _HandedServer(DrainingServer):
    """A uvicorn server that listens on nothing and serves the connections the supervisor passes it."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket, *, drain: Callable[[], None]) -> None:
        super().__init__(config, drain=drain)
        self.channel = channel
        self._adopting: set[asyncio.Task[Any]] = set()  # held until done: the loop keeps only weak references

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the app's lifespan; no listener of its own
        if self.should_exit:
            return
        self.channel.setblocking(False)
        asyncio.get_running_loop().add_reader(self.channel.fileno(), self._adopt)
        self._tell(b"r")

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGINT and not self.should_exit:
            return  # Ctrl-C reaches the whole process group: the supervisor orders the drain
        if sig == signal.SIGTERM and self.close_at is None:
            self._tell(b"x")  # stopping by itself: deal no more connections here
        super().handle_exit(sig, frame)

    def _tell(self, message: bytes) -> None:
        with suppress(OSError):  # the supervisor is gone: its end-of-file stops this worker
            self.channel.send(message)

    def _adopt(self) -> None:
        """Takes every connection waiting on the channel: one message, one descriptor each."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data, fds, _flags, _address = socket.recv_fds(self.channel, 1, 1)
            except BlockingIOError:
                return
            if not data:  # the supervisor stops us, or is gone: finish what is in flight, then exit
                loop.remove_reader(self.channel.fileno())
                self.should_exit = True
                return
            if data == b"d":
                self.drain()
            for fd in fds:
                sock = socket.socket(fileno=fd)
                sock.setblocking(False)
                task = loop.create_task(loop.connect_accepted_socket(self._protocol, sock))
                self._adopting.add(task)
                task.add_done_callback(self._adopted)

    def _adopted(self, task: asyncio.Task[Any]) -> None:
        self._adopting.discard(task)
        if not task.cancelled() and task.exception() is not None:  # e.g. the client reset it meanwhile
            log.debug("a passed connection could not be adopted: %r", task.exception())

    def _protocol(self) -> asyncio.Protocol:
        # What uvicorn's own startup builds for each accepted connection.
        made: asyncio.Protocol = self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state
        )
        return made
