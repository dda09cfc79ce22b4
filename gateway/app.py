"""``dais gateway``: the data plane process. One event loop serves the public listener (and the in-cluster one,
the only one that serves ``privateService`` endpoints, and the gateway's ``/metrics``); a worker thread
follows database notifications into the routing table; periodic tasks re-read the whole table (the safety
net for lost notifications) and write activity for the autoscaler.

Server and client are aiohttp's: measured on this project's loopback benchmark, its C-parser server with a
pooled ``ClientSession`` added the least latency of the asyncio stacks tried, streams chunk by chunk without
buffering, and cancels a handler when its client goes away (``handler_cancellation``), which closes the
upstream request too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.orm import Session, sessionmaker

from api.db.changes import CHANNEL, ROUTES_CHANNEL, LocalBus, listen_postgres, request_wake
from api.domain.catalog import EngineCatalog
from api.settings import GatewaySettings
from gateway import metrics
from gateway.activity import Activity, release_gateway, write_rows
from gateway.auth import TokenCache
from gateway.hold import ColdStarts
from gateway.proxy import Proxy, error
from gateway.routing import RoutingTable, load_routes

log = logging.getLogger("dais.gateway")

_OWN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


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
        self.cold: ColdStarts | None = None  # built with the event loop, in serve()
        self.ready = threading.Event()
        self.ports: dict[str, int] = {}  # "public" / "internal" → bound port (0 in settings picks a free one)
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dirty: set[str] = set()
        self._dirty_event: asyncio.Event | None = None
        self._reload_all = False

    # -- lifecycle --------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Serves until SIGTERM/SIGINT (or ``stop()``)."""
        asyncio.run(self.serve(handle_signals=True))

    def stop(self) -> None:
        self._stop.set()
        loop = self._loop
        if loop is not None and self._dirty_event is not None:
            loop.call_soon_threadsafe(self._dirty_event.set)

    async def serve(self, *, handle_signals: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._dirty_event = asyncio.Event()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        listener = self._start_listener(loop)  # before the first read, so no change falls between the two
        await self._reload()
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=10, keepalive_timeout=30)
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.settings.connect_timeout_seconds, sock_read=self.settings.read_timeout_seconds
        )
        client = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
        )
        tokens = TokenCache(self.sessions, ttl_s=self.settings.token_cache_seconds)
        cold = self.cold = ColdStarts(self.table, cap=self.settings.hold_queue_size, send_wake=self._send_wake)
        runners = []
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
                    client=client,
                    internal=internal,
                )
                runner = web.ServerRunner(
                    web.Server(self._own_routes(proxy, internal=internal), handler_cancellation=True, access_log=None)
                )
                await runner.setup()
                host, _, port = address.rpartition(":")
                site = web.TCPSite(runner, host or "0.0.0.0", int(port), backlog=1024)
                await site.start()
                runners.append(runner)
                bound = runner.addresses[0]
                self.ports[role] = int(bound[1])
                log.info("gateway %s listener on %s:%d", role, bound[0], bound[1])
            tasks = [
                loop.create_task(self._follow_changes()),
                loop.create_task(self._poll()),
                loop.create_task(self._write_activity()),
            ]
            self.ready.set()
            await loop.run_in_executor(None, self._stop.wait)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._stop.set()
            for runner in runners:
                await runner.cleanup()
            await client.close()
            if listener is not None:
                listener.join(timeout=5)
            await self._last_activity()

    async def _last_activity(self) -> None:
        """On the way out: the last period's figures (its last request times), then nothing in flight."""
        try:
            rows = self.activity.close_period()
            await asyncio.to_thread(write_rows, self.sessions, rows, gateway=self.name, now=self.clock())
            await asyncio.to_thread(release_gateway, self.sessions, gateway=self.name, now=self.clock())
        except Exception as exc:  # the autoscaler ignores a stale row after a minute anyway
            log.warning("could not write this gateway's last activity: %s", exc)

    # -- the gateway's own routes -----------------------------------------------------------------------------

    def _own_routes(
        self, proxy: Proxy, *, internal: bool
    ) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            path = request.path
            if path in _OWN_PATHS:
                if path == "/metrics" and internal:
                    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
                if path in ("/healthz", "/readyz"):
                    return web.json_response({"status": "ok", "routes": len(self.table)})
                return error(404, "not found")
            return await proxy(request)

        return handle

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
            except Exception as exc:
                log.warning("routing table refresh failed (%s); the next poll retries", exc)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_seconds)
            self._mark_all()

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
                log.warning("could not write activity (%s); the next period writes the figures again", exc)
                self.activity.unwritten(rows)
