"""The work queue's invariants, on a fake clock (no sleeps)."""

from __future__ import annotations

import random
import threading

from controller.queue import WorkQueue
from tests.factories import Ticks


def test_a_key_is_queued_once() -> None:
    queue = WorkQueue()
    for key in ("a", "b", "a", "a"):
        queue.add(key)
    assert [queue.get(timeout=0), queue.get(timeout=0), queue.get(timeout=0)] == ["a", "b", None]


def test_a_key_added_while_processing_comes_back_after_done() -> None:
    queue = WorkQueue()
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.add("a")  # a change arrives while a worker holds "a": not handed to a second worker
    assert queue.get(timeout=0) is None
    queue.done("a")
    assert queue.get(timeout=0) == "a"


def test_delayed_keys_wait_for_their_time() -> None:
    clock = Ticks()
    queue = WorkQueue(clock=clock)
    queue.add_after("a", 5)
    assert queue.get(timeout=0) is None
    clock.now += 5
    assert queue.get(timeout=0) == "a"


def test_backoff_grows_per_key_with_jitter_and_resets_on_success() -> None:
    clock = Ticks()
    queue = WorkQueue(base_delay=1, max_delay=8, clock=clock, rng=random.Random(7))
    delays = []
    for _ in range(6):
        delays.append(queue.retry("a"))
    ceilings = [1, 2, 4, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    assert queue.retry("b") <= 1  # other keys keep their own count
    queue.forget("a")
    assert queue.retry("a") <= 1


def test_get_blocks_until_a_key_arrives_and_close_releases_it() -> None:
    queue = WorkQueue()
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get()))
    worker.start()
    queue.add("a")
    worker.join(timeout=5)
    assert got == ["a"]
    waiter = threading.Thread(target=lambda: got.append(queue.get()))
    waiter.start()
    queue.close()
    waiter.join(timeout=5)
    assert got == ["a", None]
