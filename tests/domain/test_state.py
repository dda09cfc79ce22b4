from __future__ import annotations

import pytest

from core.domain.enums import EndpointState
from core.domain.state import Observed, shown_state


def observed(state: str, generation: int, url: str | None = None) -> Observed:
    return Observed(
        state=state, message=None, ready_replica=1, target_replica=1, url=url, observed_generation=generation
    )


@pytest.mark.parametrize(
    ("paused", "to_zero", "generation", "obs", "expected", "url"),
    [
        (False, False, 1, None, EndpointState.PENDING, None),
        (True, False, 3, observed("running", 2, "http://gw/a/b"), EndpointState.PAUSED, None),
        (False, True, 2, observed("running", 1, "http://gw/a/b"), EndpointState.SCALED_TO_ZERO, None),
        (False, False, 2, observed("running", 2, "http://gw/a/b"), EndpointState.RUNNING, "http://gw/a/b"),
        (False, False, 3, observed("running", 2, "http://gw/a/b"), EndpointState.UPDATING, None),
        (False, False, 2, observed("failed", 2, "http://gw/a/b"), EndpointState.FAILED, None),
        (False, False, 2, observed("initializing", 1), EndpointState.PENDING, None),
        (False, True, 4, observed("scaledToZero", 4), EndpointState.SCALED_TO_ZERO, None),
    ],
)
def test_shown_state(
    paused: bool, to_zero: bool, generation: int, obs: Observed | None, expected: EndpointState, url: str | None
) -> None:
    shown = shown_state(paused=paused, scaled_to_zero=to_zero, generation=generation, min_replica=1, observed=obs)
    assert shown.state is expected
    assert shown.url == url
    assert shown.message
