"""The live feed's server side: ``GET /v2/endpoint/{ns}?watch=true`` as server-sent events.

One ``FeedHub`` per API process. A thread waits for the feed's change notifications (Postgres ``LISTEN
dais_feed``, or the in-process bus under ``dais serve``), reads what is new with one query whatever the number
of watchers, and hands each event to the watchers of its namespace (an ``asyncio.Queue`` each, so a watcher
holds no thread while it waits). A watcher that reconnects with ``Last-Event-ID`` first gets what it missed
from the table; feed ids follow commit order (``core.db.feed``), so nothing in the retention window is missed.
An id older than the window gets a ``reset`` event: list the endpoints again, then watch. When the process
drains (SIGTERM), every stream ends, and those opened from then on end at once: clients reconnect elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from sqlalchemy.orm import Session, sessionmaker

from core.db import feed
from core.db.changes import LocalBus, listen_postgres
from core.db.models import FeedEvent
from core.domain.timefmt import to_client_time

log = logging.getLogger("dais.api.watch")
KEEPALIVE_S = 15.0  # a comment line this often on a quiet stream, so that a client gone silent is noticed
QUEUE_BOUND = 10_000  # events a slow watcher may fall behind by before it is told to reconnect


@dataclass(eq=False)
class _Watcher:
    namespace: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[dict[str, Any] | None]


@dataclass
class FeedHub:
    sessions: sessionmaker[Session]
    database_url: str | None  # Postgres: LISTEN; None: ``bus`` wakes the hub
    bus: LocalBus | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _watchers: set[_Watcher] = field(default_factory=set)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _last: int = -1  # the highest id handed out; -1 until the hub started
    _started: bool = False
    _draining: bool = False

    def start(self) -> None:
        """Starts the hub's threads, once (at the first watcher)."""
        with self._lock:
            if self._started:
                return
            self._started = True
        with self.sessions() as session:
            self._last = feed.bounds(session)[1]
        threading.Thread(target=self._deliver, name="feed-deliver", daemon=True).start()
        if self.database_url is not None:
            url = self.database_url
            threading.Thread(
                target=lambda: listen_postgres(
                    url, on_change=self._notified, on_gap=self._wake.set, stop=self._stop, channel=feed.CHANNEL
                ),
                name="feed-listen",
                daemon=True,
            ).start()
        elif self.bus is not None:
            self.bus.subscribe(self._notified)

    def drain(self) -> None:
        """Ends every stream, now and from now on; thread-safe."""
        with self._lock:
            self._draining = True
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher.loop.call_soon_threadsafe(_end, watcher)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()

    def _notified(self, _: str) -> None:
        self._wake.set()

    def _deliver(self) -> None:
        """Reads what is new at each wake (notifications coalesce) and fans it out by namespace."""
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                with self.sessions() as session:
                    while rows := feed.after(session, self._last):
                        self._fan_out([event_of(row) for row in rows], rows[-1].id)
            except Exception:  # a lost database: the reconnect's on_gap wakes this again
                log.exception("reading the live feed failed")

    def _fan_out(self, events: list[dict[str, Any]], last: int) -> None:
        # The watchers and the new high mark are taken together: a watcher that registers after this gets
        # these events from the table (``_missed``), one registered before gets them here.
        with self._lock:
            watchers = list(self._watchers)
            self._last = last
        for watcher in watchers:
            mine = [e for e in events if e["namespace"] == watcher.namespace]
            if mine:
                watcher.loop.call_soon_threadsafe(_offer, watcher, mine)

    def position(self) -> int:
        """The id of the latest event handed out: a watch from here misses nothing committed after this call."""
        self.start()
        with self._lock:
            return self._last

    async def watch(self, namespace: str, after: int, *, resumed: bool) -> AsyncIterator[bytes]:
        """The event stream of one watcher, from the event after ``after`` (a ``position`` or the client's
        ``Last-Event-ID``, then ``resumed``) until it leaves."""
        watcher = _Watcher(namespace, asyncio.get_running_loop(), asyncio.Queue(QUEUE_BOUND))
        with self._lock:
            draining = self._draining
            self._watchers.add(watcher)
            live_from = self._last  # what the hub hands out from here on reaches the queue
        try:
            sent = live_from
            yield b"retry: 1000\n\n"
            if draining:
                return
            if after < live_from:
                missed, reset = await anyio.to_thread.run_sync(self._missed, namespace, after, live_from)
                if reset and resumed:
                    yield _sse({"type": "reset", "reason": "events since your Last-Event-ID are no longer kept"}, sent)
                for old in missed:
                    yield _sse(old, old["id"])
            while True:
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if event is None:  # fell too far behind, or draining: the client reconnects with its Last-Event-ID
                    return
                if event["id"] > sent:
                    sent = event["id"]
                    yield _sse(event, sent)
        finally:
            with self._lock:
                self._watchers.discard(watcher)

    def _missed(self, namespace: str, after: int, upto: int) -> tuple[list[dict[str, Any]], bool]:
        with self.sessions() as session:
            low, _ = feed.bounds(session)
            rows = [r for r in feed.after(session, after, namespace=namespace, limit=QUEUE_BOUND) if r.id <= upto]
        return [event_of(r) for r in rows], low > after + 1


def _offer(watcher: _Watcher, events: list[dict[str, Any]]) -> None:
    for event in events:
        try:
            watcher.queue.put_nowait(event)
        except asyncio.QueueFull:
            _end(watcher)
            return


def _end(watcher: _Watcher) -> None:
    """Ends the watcher's stream after what it was sent; the rest is read again from the table."""
    while not watcher.queue.empty():
        watcher.queue.get_nowait()
    watcher.queue.put_nowait(None)


def event_of(row: FeedEvent) -> dict[str, Any]:
    return {
        "id": row.id,
        "namespace": row.namespace,
        "type": row.kind,
        "name": row.name,
        "time": to_client_time(row.created_at),
        **row.body,
    }


def _sse(event: dict[str, Any], event_id: int) -> bytes:
    kind = event.get("type", "message")
    return f"id: {event_id}\nevent: {kind}\n".encode() + b"data: " + orjson.dumps(event) + b"\n\n"
