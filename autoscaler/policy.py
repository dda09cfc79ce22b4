"""The scaling decision, as a pure function of the spec, the samples, the remembered state and the time.

Rules (reference/autoscaling.md §0 and §2; every number is a ``PolicyConfig`` field):

- Pause wins over everything: 0.
- Wake: an endpoint at zero with a wake signal goes to 1 at once, whatever the tick.
- Scale to zero: ``minReplica`` 0, a ``scaleToZeroTimeout``, nothing in flight and no request for that long
  (``now - last_request >= timeout``; one second short stays up) → 0. At zero it stays at zero until woken.
- Scale up, evaluated every ``up_interval`` (60 s): the measure (hardware use over 60 s, or pending requests
  per replica over 20 s) above its threshold → ``ceil(ready × value / threshold)``, at least one more than
  now, at most ``maxReplica``. Replicas still starting count as capacity: the value is averaged over ready
  *and* starting replicas with the starting ones at 0, so one spike does not add replicas twice.
- Only capacity that is really there is judged (hardware use): while the use window still holds samples from
  before the newest replica turned Ready (``Samples.ready_for_s`` below the window, HPA's readiness rule), the
  window mixes two capacities and overstates the use of the current one. It counts only for the least use it
  proves since then, the samples before having been at most 100 %.
- Saturation (hardware use): a replica at 100 % cannot show how much more work waits. When use is above the
  threshold, the gateway's figures say it, and the count needed is asked for in one decision, the larger of:
  - the requests in flight (held ones included) divided by what one replica carries at the threshold, learned
    from clean unsaturated windows (``State.carry``);
  - the use the replicas would have if they completed every request that arrived: use × arrivals / completions
    over the window (the work offered, not only the work done), against the threshold. It needs no learning,
    so it holds from the first saturated minute, but only over a window in which the replicas Ready now were
    all Ready (else completions undercount their capacity).
  Use below the threshold never reads requests as demand, so a replica that is slow but not busy adds nothing.
- Scale down, evaluated every ``down_interval`` (120 s): the proportional recommendation against the threshold
  less the tolerance (10 %: at 80 %, down only to a count that runs at most 72 %, so a small rise does not undo
  it), applied only as the highest recommendation of the last ``stabilization``
  (300 s, HPA's window; a first look assumes the window held the current count). Never while a replica is
  starting; missing metrics block it.
- Missing hardware use (Prometheus down, say) never scales down, and the decision says why; the gateway's
  pending requests per replica still scale up, against the operator's pending-requests threshold.
- ``minReplica`` (or 1 while not scaled to zero) and ``maxReplica`` always hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from core.domain.spec import DEFAULT_HARDWARE_USAGE, DEFAULT_PENDING_REQUESTS


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    up_interval_s: float = 60.0
    down_interval_s: float = 120.0
    stabilization_s: float = 300.0
    tolerance: float = 0.1
    hardware_usage: float = DEFAULT_HARDWARE_USAGE
    pending_requests: float = DEFAULT_PENDING_REQUESTS
    utilization_window_s: float = 60.0  # the window hardware use is averaged over
    saturated_at: float = 95.0  # hardware use % at which a window no longer shows how much work waits
    carry_weight: float = 0.5  # weight of the newest clean window in the learned requests-per-replica


@dataclass(frozen=True, slots=True)
class ScalingRules:
    """The parts of a spec the policy reads."""

    min_replica: int
    max_replica: int
    scale_to_zero_timeout_min: int | None = None
    hardware_usage: float | None = None  # threshold in percent, when the measure is hardware use
    pending_requests: float | None = None  # threshold per replica, when the measure is pending requests
    paused: bool = False

    @classmethod
    def from_spec(cls, spec: dict[str, Any], *, paused: bool) -> ScalingRules:
        scaling = spec["compute"]["scaling"]
        measure = scaling.get("measure") or {}
        return cls(
            min_replica=int(scaling["minReplica"]),
            max_replica=int(scaling["maxReplica"]),
            scale_to_zero_timeout_min=scaling.get("scaleToZeroTimeout"),
            hardware_usage=measure.get("hardwareUsage"),
            pending_requests=measure.get("pendingRequests"),
            paused=paused,
        )


@dataclass(frozen=True, slots=True)
class Samples:
    """What the sources saw; None means missing (recorded in the decision)."""

    ready: int
    starting: int = 0
    utilization: float | None = None  # mean percent over the window, across ready replicas
    pending_per_replica: float | None = None  # mean in-flight requests per ready replica over the window
    in_flight: int | None = None  # right now, across the endpoint
    last_request: datetime | None = None
    wake: bool = False  # the gateway asked for a replica
    ready_for_s: float | None = None  # since the newest Ready replica turned Ready; None: long enough or unknown
    arrival_rps: float | None = None  # requests arriving at the gateway per second, mean over the use window
    completion_rps: float | None = None  # requests the replicas completed per second, same window (shed ones not)
    missing_why: str | None = None  # why the hardware use is missing, when a source knows ("Prometheus unreachable…")


@dataclass(frozen=True, slots=True)
class State:
    """What the autoscaler remembers between ticks for one endpoint."""

    replicas: int
    since: datetime  # when the endpoint was first seen (stands in for the last request when there was none)
    last_up: datetime | None = None
    last_down: datetime | None = None
    recommendations: tuple[tuple[datetime, int], ...] = ()  # unstabilized, within the stabilization window
    carry: float | None = None  # requests in flight one replica carries at 100 % use (learned; None: not yet)
    steady: tuple[datetime, float] | None = None  # since when requests in flight have held near this level


@dataclass(frozen=True, slots=True)
class Decision:
    replicas: int
    raw: int  # the recommendation before stabilization
    stabilized: int  # after the stabilization window, before min/max
    reason: str
    inputs: dict[str, Any] = field(default_factory=dict)
    state: State | None = None  # the state to remember


def decide(spec: ScalingRules, samples: Samples, state: State, now: datetime, config: PolicyConfig) -> Decision:
    inputs = _inputs(spec, samples, config)
    current = state.replicas
    if spec.paused:
        return _final(0, 0, 0, "paused", inputs, replace(state, replicas=0))
    if current == 0 and spec.min_replica == 0:
        if samples.wake or (samples.in_flight or 0) > 0:
            woke = replace(state, replicas=1, recommendations=(), last_up=now, last_down=now)
            return _final(1, 1, 1, "woken: a request arrived while scaled to zero", inputs, woke)
        if spec.scale_to_zero_timeout_min is not None:
            return _final(0, 0, 0, "scaled to zero: idle", inputs, state)
    idle = _idle_for(spec, samples, state, now)
    if idle is not None:
        minutes = spec.scale_to_zero_timeout_min
        reason = f"scaled to zero: no request for {idle / 60:.1f} min (timeout {minutes} min) and none in flight"
        return _final(0, 0, 0, reason, inputs, replace(state, replicas=0, recommendations=()))
    floor = max(spec.min_replica, 1)

    value, threshold, measure = _measure(spec, samples, config)
    window = config.stabilization_s
    recommendations = tuple((t, r) for t, r in state.recommendations if (now - t).total_seconds() < window)
    up_due = state.last_up is None or (now - state.last_up).total_seconds() >= config.up_interval_s
    down_due = state.last_down is None or (now - state.last_down).total_seconds() >= config.down_interval_s
    held = replace(state, recommendations=recommendations)

    if value is None:
        missing = f"no {measure} data" + (f" ({samples.missing_why})" if samples.missing_why else "")
        wanted_up = _up_on_requests(spec, samples, current, config) if up_due else None
        if wanted_up is not None:
            raw, wanted, reason = wanted_up
            stamped = replace(held, last_up=now, recommendations=(*recommendations, (now, wanted)))
            return _bounded(wanted, raw, wanted, f"{missing}; {reason}", inputs, stamped, spec, floor)
        reason = f"holding at {current}: {missing}; missing metrics never scale down"
        return _bounded(current, current, current, reason, inputs, held, spec, floor)
    hardware = spec.pending_requests is None
    window_s = config.utilization_window_s
    # The use window began before the newest replica was Ready: it averages two capacities (a lone replica has
    # no earlier capacity to mix with).
    mixed = hardware and samples.ready > 1 and samples.ready_for_s is not None and samples.ready_for_s < window_s
    in_flight = _in_flight(samples)
    steady = _steady(state.steady, in_flight, now)
    held = replace(held, steady=steady)
    # The use window and the in-flight count describe the same work only once the load has held over the
    # whole window: at a spike's onset the window still averages the calm before it while requests queue.
    if hardware and not mixed and steady is not None and (now - steady[0]).total_seconds() >= window_s:
        held = replace(held, carry=_learned(held.carry, value, samples, in_flight, config))
    capacity = samples.ready + samples.starting
    # Starting replicas count as capacity at 0 use: the spike that started them does not start more.
    seen = value * samples.ready / capacity if capacity else value
    # A mixed window is judged by the least use the replicas Ready now can have had since the newest of them
    # turned Ready (the samples before it were at most 100 %).
    judged = _since_ready(value, samples.ready_for_s, window_s) if mixed else value
    effective = judged * samples.ready / capacity if capacity else judged
    raw = math.ceil(samples.ready * judged / threshold) if samples.ready else current
    demand = (
        _demand(held.carry, in_flight, value, samples, threshold, window_s) if hardware and value > threshold else None
    )
    needed = demand[0] if demand is not None else None
    demanded = needed is not None and needed > capacity
    if up_due and (effective > threshold or demanded):
        proportional = max(raw, current + 1) if effective > threshold else current
        wanted = min(max(proportional, needed or 0), spec.max_replica)
        stamped = replace(held, last_up=now, recommendations=(*recommendations, (now, wanted)))
        if demanded and demand is not None and demand[0] > proportional:
            word = "saturated" if value >= config.saturated_at else f"above {threshold:g}"
            reason = f"hardware use {value:.0f} % ({word}); {demand[1]} → {wanted}"
        else:
            reason = f"{measure} {effective:.1f} above {threshold:g} on {capacity} replicas: up to {wanted}"
        return _bounded(wanted, max(raw, needed or 0), wanted, reason, inputs, stamped, spec, floor)
    if up_due and seen > threshold and mixed and samples.ready_for_s is not None:  # above only as averaged
        reason = (
            f"holding at {current}: {measure} {seen:.1f} is averaged over a window that began before the newest "
            f"replica was Ready ({samples.ready_for_s:.0f} s ago); since then at least {judged:.1f}"
        )
        return _bounded(current, current, current, reason, inputs, held, spec, floor)
    if up_due:
        held = replace(held, last_up=now)
    if not down_due:
        reason = f"holding at {current}: {measure} {effective:.1f}"
        return _bounded(current, current, current, reason, inputs, held, spec, floor)
    held = replace(held, last_down=now)
    if samples.starting:
        reason = f"holding at {current}: {samples.starting} replica(s) still starting (no scale-down before Ready)"
        return _bounded(current, current, current, reason, inputs, held, spec, floor)
    # Down only as far as keeps the use a tolerance below the threshold (within it: no change). Landing just
    # under the threshold would be undone by the next small rise: that is how a climbing load flaps.
    raw = math.ceil(samples.ready * value / (threshold * (1 - config.tolerance))) if samples.ready else current
    if state.last_down is None:
        # A first look (or a restarted autoscaler) knows nothing of the last window: assume it held the current count.
        recommendations = (*recommendations, (now, current))
    recommendations = (*recommendations, (now, raw))
    held = replace(held, recommendations=recommendations)
    highest = max(r for _, r in recommendations)
    stabilized = min(current, highest)
    if stabilized < current:
        reason = (
            f"{measure} {value:.1f} below {threshold:g}: down to {max(stabilized, floor)} (highest in {window:g} s)"
        )
    else:
        reason = f"holding at {current}: {measure} {value:.1f}; the highest recommendation in {window:g} s is {highest}"
    return _bounded(stabilized, raw, stabilized, reason, inputs, held, spec, floor)


def _up_on_requests(
    spec: ScalingRules, samples: Samples, current: int, config: PolicyConfig
) -> tuple[int, int, str] | None:
    """Without hardware use, the gateway's pending requests still show a load the replicas do not keep up with:
    the raw recommendation, the count asked for and why; None when they ask for nothing or are themselves the
    missing measure."""
    pending, threshold = samples.pending_per_replica, config.pending_requests
    if spec.pending_requests is not None or pending is None:
        return None
    capacity = samples.ready + samples.starting
    effective = pending * samples.ready / capacity if capacity else pending
    if effective <= threshold:
        return None
    raw = math.ceil(samples.ready * pending / threshold) if samples.ready else current
    wanted = min(max(raw, current + 1), spec.max_replica)
    why = f"pending requests per replica {effective:.1f} above {threshold:g} on {capacity} replicas: up to {wanted}"
    return raw, wanted, why


def _in_flight(samples: Samples) -> float | None:
    """Requests in flight (held ones included): the mean over the pending window when known, else now."""
    if samples.pending_per_replica is not None:
        return samples.pending_per_replica * max(samples.ready, 1)
    return float(samples.in_flight) if samples.in_flight is not None else None


def _since_ready(value: float, ready_for_s: float | None, window_s: float) -> float:
    """The least mean use since the newest replica turned Ready that gives ``value`` over the whole window."""
    if ready_for_s is None or ready_for_s >= window_s:
        return value
    before = 1 - ready_for_s / window_s  # the share of the window from before, at 100 % at most
    return max(0.0, (value - 100 * before) / (1 - before)) if before < 1 else 0.0


STEADY_BAND = 0.2  # requests in flight within ±20 % of a level count as holding at it


def _steady(
    previous: tuple[datetime, float] | None, in_flight: float | None, now: datetime
) -> tuple[datetime, float] | None:
    if in_flight is None:
        return None
    if previous is not None and abs(in_flight - previous[1]) <= STEADY_BAND * max(previous[1], 1.0):
        return previous
    return (now, in_flight)


def _learned(
    carry: float | None, value: float, samples: Samples, in_flight: float | None, cfg: PolicyConfig
) -> float | None:
    """What one replica carries at 100 % use, from a window that shows it: all replicas Ready, busy enough to
    measure and not saturated (a saturated window hides queued work, and would overstate it)."""
    if samples.starting or not samples.ready or not in_flight or not 10 <= value < cfg.saturated_at:
        return carry
    observed = in_flight / (samples.ready * value / 100)
    # Rounded: a settled estimate then stays the same number, and the stored state is not rewritten every tick.
    return round(observed if carry is None else carry + cfg.carry_weight * (observed - carry), 3)


def _demand(
    carry: float | None, in_flight: float | None, value: float, samples: Samples, threshold: float, window_s: float
) -> tuple[int, str] | None:
    """The replicas the offered work needs at the threshold, and why: the larger of what the requests in flight
    say (when what one replica carries is known) and what the arrivals against the completions say (over a window
    the Ready replicas all served)."""
    found: list[tuple[int, str]] = []
    if carry is not None and in_flight:
        needed = math.ceil(round(in_flight / (carry * threshold / 100), 6))
        per = carry * threshold / 100
        found.append((needed, f"{in_flight:.1f} requests in flight at ~{per:.2f} per replica at {threshold:g} %"))
    arrivals, completions = samples.arrival_rps, samples.completion_rps
    whole = samples.ready_for_s is None or samples.ready_for_s >= window_s
    if whole and samples.ready and arrivals and completions and arrivals > completions:
        offered = value * arrivals / completions  # the use if every arriving request had been completed
        needed = math.ceil(round(samples.ready * offered / threshold, 6))
        found.append(
            (needed, f"{arrivals:.2f} requests/s arriving, {completions:.2f}/s completed by {samples.ready} replica(s)")
        )
    return max(found, key=lambda item: item[0]) if found else None


def _measure(spec: ScalingRules, samples: Samples, config: PolicyConfig) -> tuple[float | None, float, str]:
    if spec.pending_requests is not None:
        return samples.pending_per_replica, spec.pending_requests, "pending requests per replica"
    threshold = spec.hardware_usage if spec.hardware_usage is not None else config.hardware_usage
    return samples.utilization, threshold, "hardware use %"


def _idle_for(spec: ScalingRules, samples: Samples, state: State, now: datetime) -> float | None:
    """Seconds idle when the endpoint should go to zero now, else None."""
    if spec.min_replica != 0 or spec.scale_to_zero_timeout_min is None:
        return None
    if samples.in_flight is None or samples.in_flight > 0:
        return None  # unknown or busy: never scale to zero on missing data
    last = samples.last_request or state.since
    idle = (now - last).total_seconds()
    if idle >= timedelta(minutes=spec.scale_to_zero_timeout_min).total_seconds():
        return idle
    return None


def _bounded(
    replicas: int,
    raw: int,
    stabilized: int,
    reason: str,
    inputs: dict[str, Any],
    state: State,
    spec: ScalingRules,
    floor: int,
) -> Decision:
    final = max(floor, min(spec.max_replica, replicas))
    if final != replicas:
        reason += f" (held to [{floor}, {spec.max_replica}]: {final})"
    return _final(final, raw, stabilized, reason, inputs, replace(state, replicas=final))


def _final(replicas: int, raw: int, stabilized: int, reason: str, inputs: dict[str, Any], state: State) -> Decision:
    return Decision(replicas=replicas, raw=raw, stabilized=stabilized, reason=reason, inputs=inputs, state=state)


def _inputs(spec: ScalingRules, samples: Samples, config: PolicyConfig) -> dict[str, Any]:
    missing = [
        name
        for name, value in (
            ("utilization", samples.utilization if spec.pending_requests is None else 0),
            ("pending_per_replica", samples.pending_per_replica if spec.pending_requests is not None else 0),
            ("in_flight", samples.in_flight),
        )
        if value is None
    ]
    return {
        "ready": samples.ready,
        "starting": samples.starting,
        "utilization": samples.utilization,
        "pendingPerReplica": samples.pending_per_replica,
        "inFlight": samples.in_flight,
        "lastRequest": samples.last_request.isoformat() if samples.last_request else None,
        "wake": samples.wake,
        "missing": missing,
    }
