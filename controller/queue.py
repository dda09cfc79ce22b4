"""A work queue of endpoint ids, the controller-runtime way.

Invariants: a key is queued at most once; a key is processed by at most one worker at a time (a key
added while it is being processed is queued again once that worker is done, so no change is missed);
failures back off per key (``core.retry``: exponential, with jitter), and a success forgets the key's failures.
Delayed adds (``add_after``) wait on a heap, never in a sleeping thread.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections import deque
from collections.abc import Callable

from controller import metrics
from core.retry import Backoff


class WorkQueue:
    def __init__(
        self,
        *,
        base_delay: float = 0.05,
        max_delay: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._backoff = Backoff(base=base_delay, cap=max_delay, rng=rng or random.Random())
        self._clock = clock
        self._cond = threading.Condition()
        self._ready: deque[str] = deque()
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._dirty: set[str] = set()
        self._delayed: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._failures: dict[str, int] = {}
        self._closed = False

    def add(self, key: str) -> None:
        with self._cond:
            self._add_locked(key)

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            heapq.heappush(self._delayed, (self._clock() + delay, next(self._seq), key))
            self._cond.notify()

    def retry(self, key: str, *, after: float | None = None) -> float:
        """Counts a failure of ``key`` and re-adds it after ``after`` seconds, or by default after its next
        backoff delay; returns the delay."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay = self._backoff.delay(failures) if after is None else after
        self.add_after(key, delay)
        return delay

    def failures(self, key: str) -> int:
        """Failures of ``key`` since its last success."""
        with self._cond:
            return self._failures.get(key, 0)

    def forget(self, key: str) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def get(self, timeout: float | None = None) -> str | None:
        """The next key to process (the caller must call ``done``), or None when closed or timed out."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                self._promote_locked()
                if self._ready:
                    key = self._ready.popleft()
                    self._queued.discard(key)
                    self._processing.add(key)
                    metrics.QUEUE_DEPTH.set(len(self._ready))
                    return key
                if self._closed:
                    return None
                waits = [w for w in (self._next_due_locked(), deadline) if w is not None]
                wait = max(0.0, min(waits) - self._clock()) if waits else None
                if deadline is not None and self._clock() >= deadline:
                    return None
                self._cond.wait(wait)

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._add_locked(key)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def idle(self) -> bool:
        """Nothing ready and nothing being processed (delayed keys may still wait)."""
        with self._cond:
            self._promote_locked()
            return not self._ready and not self._processing

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._delayed)

    def _add_locked(self, key: str) -> None:
        if key in self._processing:
            self._dirty.add(key)
            return
        if key not in self._queued:
            self._queued.add(key)
            self._ready.append(key)
            metrics.QUEUE_DEPTH.set(len(self._ready))
            self._cond.notify()

    def _promote_locked(self) -> None:
        now = self._clock()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            self._add_locked(key)

    def _next_due_locked(self) -> float | None:
        return self._delayed[0][0] if self._delayed else None
