"""The one retry policy: exponential backoff with equal jitter, for every loop that waits on something transient
(the Hub, a model download, the database's notifications, the controller's per-endpoint retries).

The n-th wait (n from 0) is drawn uniformly between half and all of ``min(cap, base * 2**n)``. The random half
spreads the retries of many clients apart (no thundering herd after an outage); the fixed half makes every wait
at least half its step, so a loop cannot spin. Time and randomness are injected, so tests run on a fake clock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float
    cap: float
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def ceiling(self, attempt: int) -> float:
        """The longest wait after ``attempt`` failures before this one (0: the first retry)."""
        return min(self.cap, self.base * 2.0 ** min(attempt, 64))

    def delay(self, attempt: int) -> float:
        ceiling = self.ceiling(attempt)
        return ceiling / 2 + self.rng.random() * ceiling / 2


class GaveUp(Exception):
    """Transient failures went on past the attempts or the deadline; ``last`` is the final one."""

    def __init__(self, last: Exception, *, attempts: int) -> None:
        super().__init__(f"{type(last).__name__}: {last} (after {attempts} attempts)")
        self.last = last
        self.attempts = attempts


def retrying(
    call: Callable[[], T],
    *,
    backoff: Backoff,
    transient: Callable[[Exception], bool],
    attempts: int | None = None,
    deadline_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> T:
    """``call()`` until it returns. An error ``transient`` rejects is raised at once; a transient one is retried
    after the next delay, unless that would pass ``attempts`` calls or ``deadline_s`` seconds: then ``GaveUp``."""
    give_up = None if deadline_s is None else monotonic() + deadline_s
    failures = 0
    while True:
        try:
            return call()
        except Exception as exc:
            if not transient(exc):
                raise
            failures += 1
            delay = backoff.delay(failures - 1)
            if (attempts is not None and failures >= attempts) or (
                give_up is not None and monotonic() + delay > give_up
            ):
                raise GaveUp(exc, attempts=failures) from exc
            sleep(delay)
