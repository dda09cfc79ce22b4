"""What the API shows as an endpoint's state: user intent first, then the controller's observation.

Intent the user just expressed (pause, scale to zero, a new spec generation) is shown at once, so the
response to the call that expressed it already says so; the controller's status wins once it has
observed the current generation.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.domain.enums import EndpointState


@dataclass(frozen=True, slots=True)
class Observed:
    state: str
    message: str | None
    ready_replica: int
    target_replica: int
    url: str | None
    observed_generation: int


@dataclass(frozen=True, slots=True)
class Shown:
    state: EndpointState
    message: str
    ready_replica: int
    target_replica: int
    url: str | None


MESSAGES = {
    EndpointState.PENDING: "Endpoint waiting to be scheduled",
    EndpointState.INITIALIZING: "Endpoint is starting",
    EndpointState.RUNNING: "Endpoint is ready",
    EndpointState.FAILED: "Endpoint failed to deploy",
    EndpointState.UPDATE_FAILED: "Endpoint failed to apply the last update; the previous version keeps serving",
    EndpointState.PAUSED: "Endpoint is paused; resume it to serve again",
    EndpointState.SCALED_TO_ZERO: "Endpoint is scaled to zero; the next request wakes it",
    EndpointState.UPDATING: "Endpoint is applying a configuration change",
}


def shown_state(
    *, paused: bool, scaled_to_zero: bool, generation: int, min_replica: int, observed: Observed | None
) -> Shown:
    if paused:
        return Shown(EndpointState.PAUSED, MESSAGES[EndpointState.PAUSED], 0, 0, None)
    current = observed is not None and observed.observed_generation >= generation
    if observed is not None and current:
        state = EndpointState(observed.state)
        url = observed.url if state is EndpointState.RUNNING else None
        message = observed.message or MESSAGES[state]
        return Shown(state, message, observed.ready_replica, observed.target_replica, url)
    if scaled_to_zero:
        ready = observed.ready_replica if observed else 0
        return Shown(EndpointState.SCALED_TO_ZERO, MESSAGES[EndpointState.SCALED_TO_ZERO], ready, 0, None)
    target = max(min_replica, 1)
    if observed is not None and observed.state in (EndpointState.RUNNING, EndpointState.UPDATING):
        # A newer spec than the one running: the old replicas keep serving while it rolls out.
        return Shown(EndpointState.UPDATING, MESSAGES[EndpointState.UPDATING], observed.ready_replica, target, None)
    return Shown(EndpointState.PENDING, MESSAGES[EndpointState.PENDING], 0, target, None)
