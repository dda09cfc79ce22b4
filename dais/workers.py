"""``dais api --workers N``: N uvicorn processes behind one listening socket, with connections dealt to them
in turn by this supervisor, as Node's cluster module does.

Why not let each worker accept: with a shared or an SO_REUSEPORT socket the kernel decides, and a few
long-lived keep-alive clients split unevenly (16 connections landed 5/11 as often as 8/8 on two workers); the
busier worker's requests then wait up to twice as long, and the p99 of a run depended on that luck. Here the
supervisor accepts, and passes each connection's file descriptor to the next worker over a Unix socket
(SCM_RIGHTS); the worker adopts it into its event loop as if it had accepted it itself.

Linux (``SOCK_SEQPACKET``): a worker reads end-of-file when the supervisor dies, and exits.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

import uvicorn

log = logging.getLogger("dais.api")


def listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def run(host: str, port: int, count: int, app_factory: Callable[[], Any]) -> int:
    """Starts ``count`` workers and deals them connections until SIGTERM/SIGINT or until one dies; then stops
    accepting and stops them all (each finishes the requests it has). 1 when a worker died, else 0."""
    listener = listen(host, port)
    listener.settimeout(0.5)  # wake up to notice a stop or a dead worker
    context = multiprocessing.get_context("spawn")
    channels: list[socket.socket] = []
    workers = []
    for _ in range(count):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        worker = context.Process(target=_worker, args=(theirs, app_factory))
        worker.start()
        theirs.close()
        ours.setblocking(False)
        channels.append(ours)
        workers.append(worker)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("dais api on http://%s:%d with %d workers", f"[{host}]" if ":" in host else host, port, count)
    turn = 0
    try:
        while not stop.is_set() and all(w.is_alive() for w in workers):
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                turn = _deal(connection, channels, turn)
    finally:
        listener.close()
        failed = not stop.is_set()
        for worker in workers:
            if worker.is_alive():
                worker.terminate()  # uvicorn shuts down gracefully on SIGTERM
        for worker in workers:
            worker.join(timeout=30)
        for channel in channels:
            channel.close()
    return 1 if failed else 0


def _deal(connection: socket.socket, channels: list[socket.socket], turn: int) -> int:
    """Passes the connection to the worker whose turn it is, or to the next one whose queue has room; the
    next turn. A connection no worker can take is closed (the client sees a reset and may retry)."""
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for step in range(len(channels)):
        index = (turn + step) % len(channels)
        try:
            socket.send_fds(channels[index], [b"c"], [connection.fileno()])
        except (BlockingIOError, ConnectionError):
            continue  # that worker's queue is full, or it is gone (the supervisor's loop notices)
        return (index + 1) % len(channels)
    return turn


def _worker(channel: socket.socket, app_factory: Callable[[], Any]) -> None:
    config = uvicorn.Config(app_factory, factory=True, log_config=None, access_log=False)
    _HandedServer(config, channel).run()


class _HandedServer(uvicorn.Server):
    """A uvicorn server that listens on nothing and serves the connections the supervisor passes it."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket) -> None:
        super().__init__(config)
        self.channel = channel
        self._adopting: set[asyncio.Task[Any]] = set()  # held until done: the loop keeps only weak references

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the app's lifespan; no listener of its own
        self.channel.setblocking(False)
        asyncio.get_running_loop().add_reader(self.channel.fileno(), self._adopt)

    def _adopt(self) -> None:
        """Takes every connection waiting on the channel: one message, one descriptor each."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data, fds, _flags, _address = socket.recv_fds(self.channel, 1, 1)
            except BlockingIOError:
                return
            if not data:  # the supervisor is gone: finish what is in flight, then exit
                loop.remove_reader(self.channel.fileno())
                self.should_exit = True
                return
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
