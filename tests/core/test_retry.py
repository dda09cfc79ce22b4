"""The one retry policy, on a fake clock: bounds of each wait, transient versus not, attempts and deadline."""

from __future__ import annotations

import random

import pytest

from core.retry import Backoff, GaveUp, retrying
from tests.factories import Ticks


def test_each_wait_is_between_half_and_all_of_its_capped_step() -> None:
    backoff = Backoff(base=0.5, cap=8.0, rng=random.Random(3))
    for attempt, ceiling in enumerate([0.5, 1, 2, 4, 8, 8, 8]):
        for _ in range(50):
            assert ceiling / 2 <= backoff.delay(attempt) <= ceiling
    assert backoff.ceiling(10_000) == 8.0  # no overflow however long it fails


def _flaky(failures: list[Exception]):  # type: ignore[no-untyped-def]
    calls = []

    def call() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "ok"

    return call, calls


@pytest.mark.parametrize(
    ("failures", "attempts", "outcome", "calls"),
    [
        ([], 5, "ok", 1),
        ([TimeoutError(), TimeoutError()], 5, "ok", 3),
        ([TimeoutError()] * 5, 3, GaveUp, 3),
        ([ValueError("bad input")], 5, ValueError, 1),  # not transient: at once, no wait
        ([TimeoutError(), ValueError("bad input")], 5, ValueError, 2),
    ],
)
def test_transient_errors_are_retried_others_raised_at_once(
    failures: list[Exception], attempts: int, outcome: object, calls: int
) -> None:
    call, made = _flaky(list(failures))
    slept: list[float] = []
    kwargs = {
        "backoff": Backoff(base=1, cap=4, rng=random.Random(1)),
        "transient": lambda exc: isinstance(exc, TimeoutError),
        "attempts": attempts,
        "sleep": slept.append,
    }
    if isinstance(outcome, type):
        with pytest.raises(outcome):
            retrying(call, **kwargs)  # type: ignore[arg-type]
    else:
        assert retrying(call, **kwargs) == outcome  # type: ignore[arg-type]
    assert len(made) == calls
    transient_waits = sum(isinstance(f, TimeoutError) for f in failures[: calls - 1])
    assert len(slept) == transient_waits


def test_the_deadline_stops_before_a_wait_would_pass_it() -> None:
    clock = Ticks(start=0.0)
    call, made = _flaky([TimeoutError()] * 100)

    def sleep(seconds: float) -> None:
        clock.now += seconds

    with pytest.raises(GaveUp) as caught:
        retrying(
            call,
            backoff=Backoff(base=1, cap=1),
            transient=lambda exc: True,
            deadline_s=5,
            sleep=sleep,
            monotonic=clock,
        )
    assert clock() <= 5
    assert caught.value.attempts == len(made)
    assert isinstance(caught.value.last, TimeoutError)
