"""``dais gateway``: the data plane process. One event loop serves the public listener (and the in-cluster one,
the only one that serves ``privateService`` endpoints, and the gateway's ``/metrics``); a worker thread
follows database notifications into the routing table; periodic tasks re-read the whole table (the safety
net for lost notifications), write activity for the autoscaler and each endpoint's traffic every 10 s for the
embedded metric history (``gateway.history``).

Server and client are the gateway's own (``gateway.server``, ``gateway.upstream``): asyncio protocols on
httptools, run on uvloop where it is installed. See ``gateway.server`` for why not a framework.

SIGTERM (or ``stop()``) drains: ``/readyz`` answers 503 from then on; the public listener closes (a new
connection is refused), while the internal one keeps answering probes and scrapes; idle keep-alive connections
close, every other one once its answer is out; requests and streams in flight get ``drain_seconds`` to finish,
and those left are cut. A second signal cuts them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.orm import Session, sessionmaker

from core.db.changes import CHANNEL, ROUTES_CHANNEL, LocalBus, listen_postgres, request_wake
from core.db.metric_samples import AlreadyWritten, next_sample_at
from core.db.outage import level, unavailable
from core.domain.catalog import EngineCatalog
from core.net import split_host_port
from core.retry import Backoff
from core.settings import GatewaySettings
from gateway import metrics, native
from gateway.activity import Activity, release_gateway, write_rows
from gateway.auth import TokenCache
from gateway.history import TrafficHistory, write_samples
from gateway.hold import ColdStarts
from gateway.proxy import Proxy, error
from gateway.routing import RoutingTable, load_routes
from gateway.server import Connection, HttpServer, Request
from gateway.upstream import UpstreamPool

log = logging.getLogger("dais.gateway")

_OWN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_JSON = (b"content-type", b"application/json")


class Gateway:
    def __init__(
        self,
        settings: GatewaySettings,
        *,
        sessions: sessionmaker[Session],
        engines: EngineCatalog,
        database_url: str,
        wake_bus: LocalBus | None = None,
        routes_bus: LocalBus | None = None,
        name: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.engines = engines
        self.database_url = database_url
        self.wake_bus = wake_bus
        self.routes_bus = routes_bus  # SQLite, one process: status and spec writes arrive here, not by NOTIFY
        self.name = name or socket.gethostname()
        self.clock = clock
        self.table = RoutingTable()
        self.activity = Activity(clock=clock)
        self.history = TrafficHistory()
        # Its samples' source: unique per process, so that a restart, or two gateways on one host, never write the
        # same key (the name alone is the host's).
        self.history_source = f"{self.name[:48]}/{os.getpid()}"
        self.cold: ColdStarts | None = None  # built with the event loop, in serve()
        self.pool: UpstreamPool | None = None  # likewise
        self.ready = threading.Event()
        self.draining = False
        self.ports: dict[str, int] = {}  # "public" / "internal" → bound port (0 in settings picks a free one)
        self._stop = threading.Event()
        self._hurry: asyncio.Event | None = None  # a second stop() during the drain: cut what is left now
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dirty: set[str] = set()
        self._dirty_event: asyncio.Event | None = None
        self._reload_all = False
        self._history_at = 0  # the end of the last metric history sample, Unix seconds

    # -- lifecycle --------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Serves until SIGTERM/SIGINT (or ``stop()``), on uvloop when it is installed."""
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency where it builds (not on Windows)
            asyncio.run(self.serve(handle_signals=True))
        else:
            uvloop.run(self.serve(handle_signals=True))

    def stop(self) -> None:
        loop = self._loop
        if self._stop.is_set() and loop is not None and self._hurry is not None:
            loop.call_soon_threadsafe(self._hurry.set)
        self._stop.set()
        if loop is not None and self._dirty_event is not None:
            loop.call_soon_threadsafe(self._dirty_event.set)

    async def serve(self, *, handle_signals: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._dirty_event = asyncio.Event()
        self._hurry = asyncio.Event()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        listener = self._start_listener(loop)  # before the first read, so no change falls between the two
        pool = self.pool = UpstreamPool(
            connect_timeout=self.settings.connect_timeout_seconds,
            read_timeout=self.settings.read_timeout_seconds,
            max_head_bytes=self.settings.max_upstream_head_bytes,
        )
        tokens = TokenCache(self.sessions, ttl_s=self.settings.token_cache_seconds)
        cold = self.cold = ColdStarts(self.table, cap=self.settings.hold_queue_size, send_wake=self._send_wake)
        servers: list[tuple[str, asyncio.Server, HttpServer]] = []
        try:
            listeners = [("public", self.settings.listen, False)]
            if self.settings.internal_listen:
                listeners.append(("internal", self.settings.internal_listen, True))
            for role, address, internal in listeners:
                proxy = Proxy(
                    self.settings,
                    table=self.table,
                    tokens=tokens,
                    activity=self.activity,
                    cold=cold,
                    pool=pool,
                    internal=internal,
                    own=self._own_routes(internal=internal),
                )
                http = HttpServer(proxy, self.settings)
                host, port = split_host_port(address, default_port=0)
                server = await loop.create_server(http, host or "0.0.0.0", port, backlog=1024)
                servers.append((role, server, http))
                bound = server.sockets[0].getsockname()
                self.ports[role] = int(bound[1])
                log.info("gateway %s listener on %s:%d", role, bound[0], bound[1])
            log.info(
                "gateway request path: %s",
                "compiled (mypyc)" if native.active() else "plain Python (`dais gateway-build` compiles it)",
            )
            # Listening already (/healthz answers; /readyz and endpoint paths say 503 until the table is read),
            # so probes see a gateway that waits for its database rather than a dead one.
            if not await self._first_reload():
                return  # stopped while the database was away
            tasks = [
                loop.create_task(self._follow_changes()),
                loop.create_task(self._poll()),
                loop.create_task(self._write_activity()),
            ]
            if self.settings.history:
                tasks.append(loop.create_task(self._write_history()))
            self.ready.set()
            await loop.run_in_executor(None, self._stop.wait)
            await self._drain(servers)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._stop.set()
            for _, server, http in servers:
                server.close()
                http.close_all()
                await server.wait_closed()
            pool.close()
            if listener is not None:
                listener.join(timeout=5)
            await self._last_activity()
            if self.settings.history:
                await self._history_sample(next_sample_at(self.clock().timestamp(), self._history_at))

    async def _drain(self, servers: list[tuple[str, asyncio.Server, HttpServer]]) -> None:
        self.draining = True  # /readyz: 503
        for role, server, _ in servers:
            if role == "public":
                server.close()
        busy = sum(http.in_flight() for _, _, http in servers)
        seconds = self.settings.drain_seconds
        log.info("gateway draining: %d requests in flight get up to %g s to finish", busy, seconds)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _, _, http in servers:
            http.drain()
        assert self._hurry is not None
        drained = asyncio.gather(*(http.drained.wait() for _, _, http in servers))
        hurry = asyncio.ensure_future(self._hurry.wait())
        _, pending = await asyncio.wait((drained, hurry), timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for waiting in pending:
            waiting.cancel()
        cut = sum(http.in_flight() for _, _, http in servers)
        log.info(
            "gateway drained in %.1f s: %d requests finished, %d cut",
            loop.time() - started,
            max(0, busy - cut),
            cut,
        )

    async def _last_activity(self) -> None:
        """On the way out: the last period's figures (its last request times), then nothing in flight."""
        try:
            rows = self.activity.close_period()
            await asyncio.to_thread(write_rows, self.sessions, rows, gateway=self.name, now=self.clock())
            await asyncio.to_thread(release_gateway, self.sessions, gateway=self.name, now=self.clock())
        except Exception as exc:  # the autoscaler ignores a stale row after a minute anyway
            log.warning("could not write this gateway's last activity: %s", exc)

    # -- the gateway's own routes -----------------------------------------------------------------------------

    def _own_routes(self, *, internal: bool) -> Callable[[Request, Connection], bool]:
        """Answers the gateway's own paths (True), which are never endpoint paths."""

        def answer(request: Request, client: Connection) -> bool:
            path = request.target.partition("?")[0]
            if path not in _OWN_PATHS:
                return False
            if path == "/metrics" and internal:
                client.send(200, [(b"content-type", CONTENT_TYPE_LATEST.encode())], generate_latest())
            elif path == "/readyz" and (self.draining or not self.table.loaded):
                status = "draining" if self.draining else "starting: reading the routes"
                client.send(503, [_JSON], orjson.dumps({"status": status, "routes": len(self.table)}))
            elif path in ("/healthz", "/readyz"):
                client.send(200, [_JSON], orjson.dumps({"status": "ok", "routes": len(self.table)}))
            else:
                error(client, 404, "not found")
            return True

        return answer

    # -- routing table upkeep ---------------------------------------------------------------------------------

    def _start_listener(self, loop: asyncio.AbstractEventLoop) -> threading.Thread | None:
        def changed(endpoint_id: str) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: this gateway has stopped
                loop.call_soon_threadsafe(self._mark, endpoint_id)

        if self.routes_bus is not None:
            self.routes_bus.subscribe(changed)
            return None
        thread = threading.Thread(
            target=listen_postgres,
            name="gateway-notifications",
            kwargs={
                "url": self.database_url,
                "on_change": changed,
                "on_gap": lambda: loop.call_soon_threadsafe(self._mark_all),
                "stop": self._stop,
                "channel": (CHANNEL, ROUTES_CHANNEL),
            },
            daemon=True,
        )
        thread.start()
        return thread

    def _mark(self, endpoint_id: str) -> None:
        self._dirty.add(endpoint_id)
        assert self._dirty_event is not None
        self._dirty_event.set()

    def _mark_all(self) -> None:
        self._reload_all = True
        assert self._dirty_event is not None
        self._dirty_event.set()

    async def _follow_changes(self) -> None:
        assert self._dirty_event is not None
        while not self._stop.is_set():
            await self._dirty_event.wait()
            self._dirty_event.clear()
            try:
                if self._reload_all:
                    self._reload_all = False
                    self._dirty.clear()
                    await self._reload()
                elif self._dirty:
                    ids, self._dirty = self._dirty, set()
                    routes, gone = await asyncio.to_thread(
                        load_routes, self.sessions, engines=self.engines, use_pods=self._use_pods, ids=ids
                    )
                    for route in routes:
                        self.table.put(route)
                    for endpoint_id in gone:
                        self._removed(endpoint_id)
                    metrics.ROUTES.set(len(self.table))
            except Exception as exc:  # the table stays as it was: requests go on to the replicas it knows
                log.log(level(exc), "routing table refresh failed (%s); the next poll retries", exc)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_seconds)
            self._mark_all()

    async def _first_reload(self) -> bool:
        """Reads the routing table before serving requests. A gateway started while its database is away (a
        restart of both, a failover) waits for it instead of exiting: its pool's watch logs the outage once.
        False when stopped meanwhile."""
        backoff, attempt = Backoff(base=0.5, cap=10.0), 0
        while True:
            try:
                await self._reload()
                return True
            except Exception as exc:
                if not unavailable(exc):
                    raise
            if await asyncio.to_thread(self._stop.wait, backoff.delay(attempt)):
                return False
            attempt += 1

    async def _reload(self) -> None:
        routes, _ = await asyncio.to_thread(load_routes, self.sessions, engines=self.engines, use_pods=self._use_pods)
        known = {r.endpoint_id for r in routes}
        for endpoint_id in [r.endpoint_id for r in self.table.routes() if r.endpoint_id not in known]:
            self._removed(endpoint_id)
        self.table.replace_all(routes)
        metrics.ROUTES.set(len(self.table))

    def _removed(self, endpoint_id: str) -> None:
        route = self.table.by_id(endpoint_id)
        self.table.remove(endpoint_id)
        self.activity.forget(endpoint_id)
        if self.cold is not None:
            self.cold.forget(endpoint_id)
        if route is not None:
            metrics.drop_endpoint(route.label)

    @property
    def _use_pods(self) -> bool:
        return self.settings.upstream == "pods"

    # -- signals for the autoscaler ---------------------------------------------------------------------------

    def _send_wake(self, endpoint_id: str) -> None:
        request_wake(self.sessions, endpoint_id, bus=self.wake_bus)

    async def _write_activity(self) -> None:
        while True:
            await asyncio.sleep(self.settings.activity_seconds)
            rows = self.activity.close_period()
            try:
                await asyncio.to_thread(write_rows, self.sessions, rows, gateway=self.name, now=self.clock())
            except Exception as exc:
                log.log(level(exc), "could not write activity (%s); the next period writes the figures again", exc)
                self.activity.unwritten(rows)

    # -- the embedded metric history --------------------------------------------------------------------------

    async def _write_history(self) -> None:
        """A sample every 10 s, at the multiples of 10 s of the clock (so every writer's samples line up)."""
        while True:
            at = next_sample_at(self.clock().timestamp(), self._history_at)
            await asyncio.sleep(max(0.0, at - self.clock().timestamp()))
            await self._history_sample(at)

    async def _history_sample(self, at: int) -> None:
        self._history_at = at
        batches = self.history.queue(at, self.history.sample(self._endpoint_id))
        try:
            await asyncio.to_thread(write_samples, self.sessions, batches, source=self.history_source)
        except AlreadyWritten as exc:  # sending it again would fail again
            log.warning("metric history samples dropped: %s", exc)
            self.history.written(batches)
        except Exception as exc:
            log.log(level(exc), "could not write the metric history (%s); the next sample sends it again", exc)
        else:
            self.history.written(batches)

    def _endpoint_id(self, label: str) -> str | None:
        namespace, _, name = label.partition("/")
        route = self.table.get(namespace, name)
        return route.endpoint_id if route is not None else None
