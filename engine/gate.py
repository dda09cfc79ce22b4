"""How many requests a model runs at once, and how many may wait.

``max_concurrency`` requests run (default 1: one local model, one request at a time); up to ``max_queue`` more
wait in arrival order; past that the engine answers 503 with a ``Retry-After`` estimated from the recent run
time, so a client (or the gateway) backs off instead of piling on. The counts are what ``/metrics`` exports as
the engine's queue.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque


class Busy(Exception):
    """The queue is full."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"the model is busy: {retry_after_s} s")
        self.retry_after_s = retry_after_s


class Gate:
    def __init__(self, *, max_concurrency: int, max_queue: int) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.running = 0
        self.waiting = 0
        self._slots = asyncio.Semaphore(max_concurrency)
        self._recent: deque[float] = deque(maxlen=20)  # seconds each of the last requests held a slot
        self._busy = 0.0  # slot-seconds of requests done
        self._granted: set[float] = set()  # when each running request got its slot

    async def acquire(self) -> float:
        """Waits for a slot (raises ``Busy`` when the queue is full); returns when it was granted, for ``release``."""
        if self._slots.locked() and self.waiting >= self.max_queue:
            raise Busy(self.retry_after_s())
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        granted = time.monotonic()
        while granted in self._granted:  # two grants in one clock tick: keep them apart
            granted = math.nextafter(granted, math.inf)
        self._granted.add(granted)
        return granted

    def release(self, granted: float) -> None:
        """Frees the slot; on the event loop's thread (a stream's generating thread hands it back there)."""
        held = time.monotonic() - granted
        self._recent.append(held)
        self._busy += held
        self._granted.discard(granted)
        self.running -= 1
        self._slots.release()

    def busy_seconds(self) -> float:
        """Slot-seconds spent on requests so far, running ones included: its rate over the slots is the use."""
        now = time.monotonic()
        return self._busy + sum(now - granted for granted in self._granted)

    def retry_after_s(self) -> int:
        """When a slot is likely free for one more: the queue ahead, at the recent mean run time."""
        mean = sum(self._recent) / len(self._recent) if self._recent else 1.0
        return max(1, math.ceil(mean * (self.waiting + 1) / self.max_concurrency))
