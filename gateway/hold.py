"""Cold starts: wake an endpoint that cannot serve, and hold requests that asked to wait for it.

Invariants:
- A request for an endpoint with no Ready replica (scaled to zero, or starting) sends a wake signal, at most
  one per endpoint per ``WAKE_EVERY_S``: the autoscaler's fast path. A paused endpoint is never woken.
- A held request waits on the routing table's event for its endpoint, which is set when a status change
  shows a Ready replica; it is forwarded at that moment, with no polling. It gives up at its own deadline.
- At most ``cap`` requests are held per endpoint; the next one is refused at once, so a flood cannot pile up
  sockets and memory behind an endpoint that is still starting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from enum import StrEnum

from gateway import metrics
from gateway.routing import Route, RoutingTable

WAKE_EVERY_S = 1.0

log = logging.getLogger("dais.gateway.hold")


class HoldOutcome(StrEnum):
    FULL = "full"
    TIMEOUT = "timeout"
    PAUSED = "paused"
    GONE = "gone"


class ColdStarts:
    def __init__(
        self,
        table: RoutingTable,
        *,
        cap: int,
        send_wake: Callable[[str], None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self.cap = cap
        self.send_wake = send_wake  # blocking (a NOTIFY); run in a worker thread
        self.monotonic = monotonic
        self._held: dict[str, int] = {}
        self._woken_at: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def forget(self, endpoint_id: str) -> None:
        """The endpoint is gone from the routing table."""
        self._woken_at.pop(endpoint_id, None)

    def wake(self, route: Route) -> None:
        if route.paused:
            return
        now = self.monotonic()
        if now - self._woken_at.get(route.endpoint_id, -WAKE_EVERY_S) < WAKE_EVERY_S:
            return
        self._woken_at[route.endpoint_id] = now
        metrics.series(route.label).cold_starts += 1
        task = asyncio.get_running_loop().create_task(self._send(route))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, route: Route) -> None:
        try:
            await asyncio.to_thread(self.send_wake, route.endpoint_id)
        except Exception as exc:  # the autoscaler's tick still wakes it from the activity rows
            log.warning("wake signal for %s failed (%s); the autoscaler's next tick will wake it", route.label, exc)

    async def hold(self, route: Route, timeout_s: float, avoid: frozenset[str] = frozenset()) -> Route | HoldOutcome:
        """Waits until the endpoint serves (returns its route) or gives up (returns why). Upstreams in ``avoid``
        (one that just refused a connection, while the table has not yet heard it stopped) do not count."""
        endpoint_id = route.endpoint_id
        if self._held.get(endpoint_id, 0) >= self.cap:
            return HoldOutcome.FULL
        self._held[endpoint_id] = self._held.get(endpoint_id, 0) + 1
        figures = metrics.series(route.label)
        figures.held += 1
        started = self.monotonic()
        deadline = started + timeout_s
        try:
            while True:
                current = self.table.by_id(endpoint_id)
                if current is None:
                    return HoldOutcome.GONE
                if current.paused:
                    return HoldOutcome.PAUSED
                usable = tuple(u for u in current.upstreams if u not in avoid)
                if current.serving and usable:
                    metrics.COLD_START_SECONDS.observe(self.monotonic() - started)
                    return replace(current, upstreams=usable) if avoid else current
                self.wake(current)
                left = deadline - self.monotonic()
                if left <= 0:
                    return HoldOutcome.TIMEOUT
                event = self.table.changed(endpoint_id)
                # Re-woken at most every few seconds, so a lost wake signal is sent again while held.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout=min(left, 5.0))
        finally:
            self._held[endpoint_id] -= 1
            if not self._held[endpoint_id]:
                del self._held[endpoint_id]
            figures.held -= 1
