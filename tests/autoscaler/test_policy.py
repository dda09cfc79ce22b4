"""The scaling policy on a fake clock: one test per rule, boundary and combination."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from autoscaler.policy import Decision, PolicyConfig, Samples, ScalingRules, State, decide

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CONFIG = PolicyConfig()
GPU = ScalingRules(min_replica=1, max_replica=8, hardware_usage=80)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def state(replicas: int, **kw: object) -> State:
    return State(replicas=replicas, since=T0 - timedelta(hours=1), **kw)  # type: ignore[arg-type]


def run(spec: ScalingRules, ticks: list[tuple[float, Samples]], start: State) -> list[Decision]:
    """Feeds samples at the given seconds, carrying the state from decision to decision."""
    decisions, current = [], start
    for seconds, samples in ticks:
        decision = decide(spec, samples, current, at(seconds), CONFIG)
        assert decision.state is not None
        current = decision.state
        decisions.append(decision)
    return decisions


def busy(util: float, ready: int, starting: int = 0) -> Samples:
    return Samples(ready=ready, starting=starting, utilization=util, in_flight=3, last_request=T0)


def test_pause_wins_over_everything() -> None:
    decision = decide(replace(GPU, paused=True), busy(100, ready=4), state(4), T0, CONFIG)
    assert (decision.replicas, decision.reason) == (0, "paused")


def test_above_the_threshold_scales_up_proportionally() -> None:
    decision = decide(GPU, busy(100, ready=4), state(4), T0, CONFIG)
    assert decision.replicas == 5  # ceil(4 × 100 / 80)
    assert decision.reason == "hardware use % 100.0 above 80 on 4 replicas: up to 5"


def test_scale_up_adds_at_least_one_replica() -> None:
    assert decide(GPU, busy(81, ready=4), state(4), T0, CONFIG).replicas == 5  # ceil(4.05) = 5 anyway
    assert decide(GPU, busy(80.5, ready=1), state(1), T0, CONFIG).replicas == 2


def test_scale_up_never_passes_max_replica() -> None:
    assert decide(GPU, busy(100, ready=8), state(8), T0, CONFIG).replicas == 8
    assert decide(replace(GPU, max_replica=5), busy(100, ready=4), state(4), T0, CONFIG).replicas == 5


def test_at_the_threshold_exactly_nothing_scales_up() -> None:
    assert decide(GPU, busy(80, ready=4), state(4), T0, CONFIG).replicas == 4


def test_scale_up_is_evaluated_once_a_minute() -> None:
    first, early, later = run(GPU, [(0, busy(100, 2)), (59, busy(100, 3)), (60, busy(100, 3))], state(2))
    assert [first.replicas, early.replicas, later.replicas] == [3, 3, 4]


def test_starting_replicas_count_as_capacity_so_one_spike_adds_once() -> None:
    # 4 ready at 100 % asked for a 5th; while it starts, the same load reads as 80 % over 5 replicas.
    decision = decide(GPU, busy(100, ready=4, starting=1), state(5, last_up=at(-60)), T0, CONFIG)
    assert decision.replicas == 5


def test_scale_down_waits_for_the_stabilization_window() -> None:
    ticks = [(0, busy(30, 4))] + [(t, busy(30, 4)) for t in (120, 240, 360)]
    decisions = run(GPU, ticks, state(4, recommendations=((at(-1), 4),), last_down=at(-120)))
    # The 4 recommended just before t=0 holds until it leaves the 300 s window.
    assert [d.replicas for d in decisions] == [4, 4, 4, 2]
    assert decisions[-1].reason == "hardware use % 30.0 below 80: down to 2 (highest in 300 s)"


def test_scale_down_is_evaluated_every_two_minutes() -> None:
    quiet = state(4, last_down=at(-60), last_up=at(-60))
    assert decide(GPU, busy(10, 4), quiet, T0, CONFIG).reason == "holding at 4: hardware use % 10.0"


def test_within_the_tolerance_nothing_scales_down() -> None:
    decision = decide(GPU, busy(73, 4), state(4), T0, CONFIG)  # 73/80 = 0.91: within 10 %
    assert decision.replicas == 4


def test_no_scale_down_while_a_replica_is_starting() -> None:
    decision = decide(GPU, busy(10, ready=3, starting=1), state(4, last_up=T0), T0, CONFIG)
    assert decision.replicas == 4
    assert "still starting" in decision.reason


def test_missing_metrics_block_scale_down_and_are_recorded() -> None:
    missing = Samples(ready=4, utilization=None, in_flight=0, last_request=T0)
    decision = decide(GPU, missing, state(4), T0, CONFIG)
    assert decision.replicas == 4
    assert decision.inputs["missing"] == ["utilization"]
    assert decision.reason == "holding at 4: no hardware use % data; missing metrics never scale down"


def test_the_decision_says_why_the_hardware_use_is_missing() -> None:
    missing = Samples(ready=4, in_flight=0, last_request=T0, missing_why="Prometheus unreachable: connection refused")
    decision = decide(GPU, missing, state(4), T0, CONFIG)
    assert (decision.replicas, decision.reason) == (
        4,
        "holding at 4: no hardware use % data (Prometheus unreachable: connection refused); "
        "missing metrics never scale down",
    )


def test_without_hardware_use_pending_requests_still_scale_up() -> None:
    """2 replicas with 4.5 requests pending each, against the default 1.5 per replica: ceil(2 × 4.5 / 1.5) = 6."""
    queued = Samples(ready=2, pending_per_replica=4.5, in_flight=9, last_request=T0, missing_why="Prometheus down")
    decision = decide(GPU, queued, state(2), T0, CONFIG)
    assert decision.replicas == 6
    assert decision.reason == (
        "no hardware use % data (Prometheus down); pending requests per replica 4.5 above 1.5 on 2 replicas: up to 6"
    )
    assert decision.state is not None
    assert decision.state.last_up == T0


def test_without_hardware_use_few_pending_requests_never_scale_down() -> None:
    calm = Samples(ready=4, pending_per_replica=0.0, in_flight=0, last_request=T0)
    assert decide(GPU, calm, state(4), at(600), CONFIG).replicas == 4


def test_without_hardware_use_the_request_scale_up_waits_for_its_interval() -> None:
    queued = Samples(ready=2, pending_per_replica=4.5, in_flight=9, last_request=T0)
    assert decide(GPU, queued, state(2, last_up=at(-30)), T0, CONFIG).replicas == 2


def test_never_below_min_replica() -> None:
    spec = replace(GPU, min_replica=3)
    decisions = run(spec, [(0, busy(5, 4)), (400, busy(5, 4))], state(4))
    assert decisions[-1].replicas == 3


def test_pending_requests_above_the_threshold_scale_up() -> None:
    spec = ScalingRules(min_replica=1, max_replica=10, pending_requests=1.5)
    samples = Samples(ready=2, pending_per_replica=4.0, in_flight=8, last_request=T0)
    decision = decide(spec, samples, state(2), T0, CONFIG)
    assert decision.replicas == 6  # ceil(2 × 4 / 1.5)
    assert decision.reason.startswith("pending requests per replica 4.0 above 1.5")


def test_pending_requests_scale_down_by_the_same_rules() -> None:
    spec = ScalingRules(min_replica=1, max_replica=10, pending_requests=1.5)
    low = Samples(ready=6, pending_per_replica=0.5, in_flight=3, last_request=T0)
    decisions = run(spec, [(0, low), (300, low)], state(6))
    assert [d.replicas for d in decisions] == [6, 3]  # ceil(6 × 0.5 / (1.5 × 0.9)): 1.0 per replica, not 1.5


def test_scale_down_lands_a_tolerance_below_the_threshold() -> None:
    # 6 × 65 / 80 = 4.9 would give 5 replicas at 78 %: one small rise and it scales up again.
    decisions = run(GPU, [(0, busy(65, 6)), (300, busy(65, 6))], state(6))
    assert [d.replicas for d in decisions] == [6, 6]
    assert decisions[-1].raw == 6  # ceil(6 × 65 / 72)


IDLE = ScalingRules(min_replica=0, max_replica=4, scale_to_zero_timeout_min=15, hardware_usage=80)


def quiet(last_request: datetime, in_flight: int = 0) -> Samples:
    return Samples(ready=1, utilization=0.0, in_flight=in_flight, last_request=last_request)


def test_scale_to_zero_after_the_timeout_exactly() -> None:
    last = T0 - timedelta(minutes=15)
    decision = decide(IDLE, quiet(last), state(1), T0, CONFIG)
    assert decision.replicas == 0
    assert decision.reason == "scaled to zero: no request for 15.0 min (timeout 15 min) and none in flight"


def test_one_second_short_of_the_timeout_stays_up() -> None:
    last = T0 - timedelta(minutes=15) + timedelta(seconds=1)
    assert decide(IDLE, quiet(last), state(1), T0, CONFIG).replicas == 1


def test_a_request_in_flight_keeps_it_up() -> None:
    assert decide(IDLE, quiet(T0 - timedelta(hours=2), in_flight=1), state(1), T0, CONFIG).replicas == 1


def test_unknown_in_flight_never_scales_to_zero() -> None:
    unknown = Samples(ready=1, utilization=0.0, in_flight=None, last_request=T0 - timedelta(hours=2))
    assert decide(IDLE, unknown, state(1), T0, CONFIG).replicas == 1


def test_without_min_replica_0_it_never_scales_to_zero() -> None:
    spec = replace(IDLE, min_replica=1)
    assert decide(spec, quiet(T0 - timedelta(hours=5)), state(1), T0, CONFIG).replicas == 1


def test_at_zero_it_stays_at_zero_until_woken() -> None:
    asleep = state(0)
    assert decide(IDLE, Samples(ready=0, in_flight=0), asleep, T0, CONFIG).replicas == 0
    woken = decide(IDLE, Samples(ready=0, in_flight=0, wake=True), asleep, T0, CONFIG)
    assert (woken.replicas, woken.reason) == (1, "woken: a request arrived while scaled to zero")


def test_a_woken_endpoint_is_not_sent_back_to_zero_by_an_old_last_request() -> None:
    woken = decide(IDLE, Samples(ready=0, in_flight=0, wake=True), state(0), T0, CONFIG)
    assert woken.state is not None
    # The waking request is in flight on the next tick, so the idle rule does not fire.
    after = decide(IDLE, quiet(T0 - timedelta(hours=1), in_flight=1), woken.state, at(5), CONFIG)
    assert after.replicas == 1


def test_min_zero_without_a_timeout_still_serves_one() -> None:
    spec = ScalingRules(min_replica=0, max_replica=4, hardware_usage=80)
    assert decide(spec, busy(10, 1), state(1), T0, CONFIG).replicas == 1


@pytest.mark.parametrize(
    ("threshold", "util", "ready", "expected"),
    [(50, 60, 2, 3), (90, 95, 10, 11), (80, 200, 1, 3), (80, 79, 3, 3)],
)
def test_per_endpoint_thresholds(threshold: float, util: float, ready: int, expected: int) -> None:
    spec = replace(GPU, hardware_usage=threshold, max_replica=20)
    assert decide(spec, busy(util, ready), state(ready), T0, CONFIG).replicas == expected


def test_scaling_from_the_stored_spec() -> None:
    spec = {
        "compute": {
            "scaling": {"minReplica": 0, "maxReplica": 3, "scaleToZeroTimeout": 30, "measure": {"pendingRequests": 2.0}}
        }
    }
    assert ScalingRules.from_spec(spec, paused=False) == ScalingRules(
        min_replica=0, max_replica=3, scale_to_zero_timeout_min=30, pending_requests=2.0
    )


# -- only capacity that is really there is judged (issue: overshoot after every scale-up) ------------------


def settling(util: float, ready: int, ready_for_s: float) -> Samples:
    return Samples(ready=ready, utilization=util, in_flight=2, last_request=T0, ready_for_s=ready_for_s)


def test_a_window_mixing_the_capacity_before_the_newest_replica_does_not_scale_up() -> None:
    # Half the window at 100 % on one replica, half at 75 % on two: 87.5 % averaged, 75 % since the second.
    decision = decide(GPU, settling(87.5, ready=2, ready_for_s=30), state(2), T0, CONFIG)
    assert decision.replicas == 2
    assert decision.reason == (
        "holding at 2: hardware use % 87.5 is averaged over a window that began before the newest replica was "
        "Ready (30 s ago); since then at least 75.0"
    )


@pytest.mark.parametrize(("util", "expected"), [(90.0, 2), (90.2, 3)])
def test_a_mixed_window_scales_up_only_when_the_use_since_ready_is_above_the_threshold(
    util: float, expected: int
) -> None:
    # At least (util - 50) / 0.5 since the second replica turned Ready: exactly 80 at 90 %, 80.4 at 90.2 %.
    assert decide(GPU, settling(util, ready=2, ready_for_s=30), state(2), T0, CONFIG).replicas == expected


def test_a_whole_window_on_the_current_replicas_is_judged_as_it_is() -> None:
    assert decide(GPU, settling(87.5, ready=2, ready_for_s=60), state(2), T0, CONFIG).replicas == 3


def test_a_lone_replica_has_no_earlier_capacity_to_mix_with() -> None:
    assert decide(GPU, settling(100, ready=1, ready_for_s=5), state(1), T0, CONFIG).replicas == 2


def test_a_steady_load_of_one_and_a_half_replicas_settles_at_two() -> None:
    # 1 replica saturated at 150 % of its work → 2; once Ready, the two run at 75 %: no third, no scale-down.
    ticks = [(0.0, Samples(ready=1, utilization=100, pending_per_replica=1.5, in_flight=2, last_request=T0))]
    ticks += [
        (15.0 * i, Samples(ready=1, starting=1, utilization=100, pending_per_replica=1.5, in_flight=2, last_request=T0))
        for i in range(1, 6)
    ]
    for i in range(6, 60):
        since_ready = 15.0 * i - 90
        util = 75 + 25 * max(0.0, 1 - since_ready / 60)  # the window slides off the saturated minute
        ticks.append(
            (
                15.0 * i,
                Samples(
                    ready=2,
                    utilization=util,
                    pending_per_replica=0.75,
                    in_flight=2,
                    last_request=T0,
                    ready_for_s=since_ready,
                ),
            )
        )
    decisions = run(GPU, ticks, state(1))
    assert {d.replicas for d in decisions[1:]} == {2}
    assert decisions[-1].state is not None
    assert decisions[-1].state.carry == 1.0  # 1.5 requests on two replicas at 75 %: one carries 1.0 at 100 %


# -- saturation: the demand is sized from requests in flight (issue: a spike climbed one replica per start-up)


def loaded(util: float, ready: int, in_flight: float, starting: int = 0) -> Samples:
    return Samples(
        ready=ready,
        starting=starting,
        utilization=util,
        pending_per_replica=in_flight / ready,
        in_flight=round(in_flight),
        last_request=T0,
    )


def learned(carry: float) -> State:
    return state(1, carry=carry, steady=(at(-600), 0.6))


def test_what_one_replica_carries_is_learned_from_a_steady_unsaturated_window() -> None:
    calm = run(GPU, [(0, loaded(60, 1, 0.6)), (60, loaded(60, 1, 0.6))], state(1))
    assert [d.state.carry for d in calm if d.state] == [None, 1.0]  # only once the load held for a window


def test_a_saturated_spike_asks_for_the_needed_count_in_one_decision() -> None:
    decision = decide(GPU, loaded(100, 1, 5.0), learned(1.0), T0, CONFIG)
    assert decision.replicas == 7
    assert decision.reason == (
        "hardware use 100 % (saturated); 5.0 requests in flight at ~0.80 per replica at 80 % → 7"
    )


@pytest.mark.parametrize(("in_flight", "expected"), [(4.0, 5), (4.01, 6)])
def test_the_needed_count_at_its_boundary(in_flight: float, expected: int) -> None:
    # 4.0 requests at 0.8 per replica need exactly 5; any more needs a 6th.
    assert decide(GPU, loaded(100, 1, in_flight), learned(1.0), T0, CONFIG).replicas == expected


def test_the_onset_of_a_spike_does_not_teach_a_wrong_carry() -> None:
    # Requests jump at once while the use window still averages the calm minute before: no learning then.
    onset = [(0, loaded(60, 1, 0.6)), (60, loaded(60, 1, 0.6)), (75, loaded(70, 1, 4.1)), (90, loaded(80.4, 1, 5.0))]
    decisions = run(GPU, onset, state(1))
    assert [d.state.carry for d in decisions if d.state] == [None, 1.0, 1.0, 1.0]


def test_a_replica_that_is_slow_but_not_busy_is_not_mistaken_for_demand() -> None:
    decision = decide(GPU, loaded(30, 1, 12.0), learned(1.0), T0, CONFIG)
    assert decision.replicas == 1


def test_replicas_already_starting_cover_the_demand_they_were_started_for() -> None:
    # 7 asked for: 1 Ready at 100 %, 6 starting; the same 5 requests need no more.
    decision = decide(GPU, loaded(100, 1, 5.0, starting=6), replace(learned(1.0), replicas=7), T0, CONFIG)
    assert decision.replicas == 7


def test_the_pending_requests_measure_keeps_its_meaning() -> None:
    spec = ScalingRules(min_replica=1, max_replica=10, pending_requests=1.5)
    decision = decide(spec, loaded(100, 2, 8.0), replace(learned(1.0), replicas=2), T0, CONFIG)
    assert decision.replicas == 6  # ceil(2 × 4 / 1.5), as without saturation


# -- saturation before anything is learned: the work offered, from arrivals against completions


def arriving(util: float, ready: int, arrivals: float, completions: float, **kw: object) -> Samples:
    return replace(loaded(util, ready, 3.0), arrival_rps=arrivals, completion_rps=completions, **kw)  # type: ignore[arg-type]


def test_a_cold_saturated_endpoint_asks_for_the_offered_work_in_one_decision() -> None:
    # Nothing learned yet: 6 requests/s arrive, the one replica completes 2/s at 100 %: 300 % offered → 4.
    decision = decide(GPU, arriving(100, 1, 6.0, 2.0), state(1), T0, CONFIG)
    assert decision.replicas == 4
    assert decision.reason == (
        "hardware use 100 % (saturated); 6.00 requests/s arriving, 2.00/s completed by 1 replica(s) → 4"
    )


@pytest.mark.parametrize(("arrivals", "expected"), [(6.4, 4), (6.41, 5)])
def test_the_offered_count_at_its_boundary(arrivals: float, expected: int) -> None:
    # 2 replicas at 100 % complete 4/s: 6.4/s arriving is 320 % offered, exactly 4 at 80 %; any more needs a 5th.
    decision = decide(GPU, arriving(100, 2, arrivals, 4.0), state(2), T0, CONFIG)
    assert decision.replicas == expected


def test_completions_over_a_window_the_replicas_were_not_all_ready_for_are_not_read_as_capacity() -> None:
    # The replica turned Ready 30 s ago: the window's completions cover half of it and understate what it does.
    young = decide(GPU, arriving(100, 1, 6.0, 1.0, ready_for_s=30.0), state(1), T0, CONFIG)
    assert young.replicas == 2  # the proportional rule alone
    whole = decide(GPU, arriving(100, 1, 6.0, 2.0, ready_for_s=60.0), state(1), T0, CONFIG)
    assert whole.replicas == 4


def test_arrivals_outpacing_completions_below_the_threshold_are_not_demand() -> None:
    # Slow replicas (long requests) at 50 %: requests pile up but the hardware is not busy.
    assert decide(GPU, arriving(50, 2, 6.0, 2.0), state(2), T0, CONFIG).replicas == 2


def test_the_larger_of_the_in_flight_and_the_offered_counts_is_asked_for() -> None:
    # Learned carry says 5.0 requests in flight need 7; the rates say 300 % offered needs only 4.
    by_flight = decide(
        GPU, replace(arriving(100, 1, 6.0, 2.0), in_flight=5, pending_per_replica=5.0), learned(1.0), T0, CONFIG
    )
    assert by_flight.replicas == 7
    assert "requests in flight" in by_flight.reason
    by_rate = decide(
        GPU, replace(arriving(100, 1, 12.0, 2.0), in_flight=5, pending_per_replica=5.0), learned(1.0), T0, CONFIG
    )
    assert by_rate.replicas == 8  # 600 % offered → ceil(7.5), as many as maxReplica allows
    assert "requests/s arriving" in by_rate.reason
