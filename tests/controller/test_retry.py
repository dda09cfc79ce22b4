"""Errors choose the retry: what each failure makes the work queue do, on a fake clock."""

from __future__ import annotations

import logging
import random

import psycopg
import pytest

from controller.app import CONFLICTS_AT_ONCE, Controller
from controller.errors import PermanentError
from controller.queue import WorkQueue
from controller.retry import Requeue, Retry, retry_for
from core.kube.client import KubeError, KubeUnreachable, _error
from tests.factories import Ticks


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (KubeError(409, "the object has been modified", "Conflict"), Retry(Requeue.NOW)),
        (KubeError(429, "too many requests", "TooManyRequests", retry_after=3), Retry(Requeue.AFTER, 3)),
        (KubeError(504, "timeout", "ServerTimeout", retry_after=2), Retry(Requeue.AFTER, 2)),
        (PermanentError("hardware x is no longer in the catalog"), Retry(Requeue.NEVER)),
        (KubeUnreachable("Connection refused"), Retry(Requeue.WAIT)),
        (psycopg.errors.AdminShutdown("terminating connection"), Retry(Requeue.WAIT)),  # the database restarts
        (psycopg.errors.SerializationFailure("could not serialize"), Retry(Requeue.BACKOFF)),
        (KubeError(500, "etcdserver: leader changed", "InternalError"), Retry(Requeue.BACKOFF)),
        (KubeError(429, "too many requests", "TooManyRequests"), Retry(Requeue.BACKOFF)),
        (TimeoutError("read timed out"), Retry(Requeue.BACKOFF)),
        (KeyError("spec"), Retry(Requeue.BACKOFF)),
    ],
)
def test_each_error_chooses_its_retry(raised: BaseException, expected: Retry) -> None:
    assert retry_for(raised) == expected


@pytest.mark.parametrize(
    ("body", "status", "retry_after"),
    [
        (b'{"kind":"Status","reason":"TooManyRequests","details":{"retryAfterSeconds":3}}', 429, 3.0),
        (b'{"kind":"Status","reason":"Conflict","message":"modified"}', 409, None),
        (b'{"kind":"Status","details":{"retryAfterSeconds":0}}', 500, None),
        (b"<html>bad gateway</html>", 502, None),
    ],
)
def test_the_api_servers_own_wait_is_read_from_its_status(body: bytes, status: int, retry_after: float | None) -> None:
    error = _error(status, body)
    assert (error.status, error.retry_after) == (status, retry_after)


def _queue() -> tuple[WorkQueue, Ticks]:
    clock = Ticks()
    return WorkQueue(base_delay=1, max_delay=8, clock=clock, rng=random.Random(5)), clock


def _handled(queue: WorkQueue, exc: Exception) -> None:
    key = queue.get(timeout=0)
    assert key == "a"
    Controller._requeue(queue, key, exc)
    queue.done(key)


def test_a_conflict_is_requeued_at_once_a_few_times_then_backs_off() -> None:
    queue, clock = _queue()
    queue.add("a")
    conflict = KubeError(409, "modified", "Conflict")
    for _ in range(CONFLICTS_AT_ONCE + 1):
        _handled(queue, conflict)  # each time, "a" was ready again with no time passing
    assert queue.get(timeout=0) is None  # past the limit: waits its backoff
    clock.now += 8
    assert queue.get(timeout=0) == "a"


def test_a_known_wait_is_kept_without_growing_the_backoff() -> None:
    queue, clock = _queue()
    queue.add("a")
    _handled(queue, KubeError(429, "too many requests", "TooManyRequests", retry_after=30))
    assert queue.failures("a") == 0
    clock.now += 29.9
    assert queue.get(timeout=0) is None
    clock.now += 0.1
    assert queue.get(timeout=0) == "a"


def test_a_permanent_error_is_not_requeued() -> None:
    queue, clock = _queue()
    queue.add("a")
    _handled(queue, PermanentError("cannot work as written"))
    clock.now += 3600
    assert queue.get(timeout=0) is None
    assert queue.failures("a") == 0


def test_anything_else_backs_off_exponentially() -> None:
    queue, clock = _queue()
    queue.add("a")
    waits = []
    for _ in range(4):
        before = clock.now
        _handled(queue, TimeoutError("read timed out"))
        while queue.get(timeout=0) is None:
            clock.now += 0.05
        waits.append(clock.now - before)
        queue.done("a")
        queue.add("a")
    assert [round(w) >= c / 2 for w, c in zip(waits, [1, 2, 4, 8], strict=True)] == [True] * 4
    assert queue.failures("a") == 4


def test_an_unreachable_api_server_backs_off_without_a_line_per_endpoint(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dais.controller")
    queue, clock = _queue()
    queue.add("a")
    _handled(queue, KubeUnreachable("Connection refused"))
    assert queue.failures("a") == 1
    assert queue.get(timeout=0) is None
    clock.now += 1
    assert queue.get(timeout=0) == "a"
    assert [r.levelno for r in caplog.records if r.name == "dais.controller"] == [logging.DEBUG]
