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
        return time.monotonic()

    def release(self, granted: float) -> None:
        """Frees the slot; on the event loop's thread (a stream's generating thread hands it back there)."""
        self._recent.append(time.monotonic() - granted)
        self.running -= 1
        self._slots.release()

    def retry_after_s(self) -> int:
        """When a slot is likely free for one more: the queue ahead, at the recent mean run time."""
        mean = sum(self._recent) / len(self._recent) if self._recent else 1.0
        return max(1, math.ceil(mean * (self.waiting + 1) / self.max_concurrency))
