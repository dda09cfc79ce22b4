"""Replays a load trace on a virtual clock through the real policy (``autoscaler.policy.decide``).

A trace is CSV with a header: ``t_s`` (seconds from the start) and ``load`` (the work as percent of one
replica: 250 keeps 2.5 replicas fully busy), optionally ``requests`` (requests in flight; default load / 100).
Each row holds until the next. Comment lines ``# key=value ...`` set the spec the trace was made for
(minReplica, maxReplica, scaleToZeroTimeout, hardwareUsage or pendingRequests); options override them.

The model: a replica asked for becomes Ready ``startup_s`` later; one taken away stops at once (a starting
one first). Each Ready replica's use is ``min(100, load / ready)`` percent (it saturates); the policy sees its
mean over the utilization window, as Prometheus would, and how long ago the newest replica turned Ready, as the
pods' Ready conditions say on a cluster. Requests in flight come from the trace, as the gateway reports them.
Requests arrive at ``SERVICE_RPS`` per replica's worth of load and the Ready replicas complete at most
``SERVICE_RPS`` each (the rest waits or is shed); the policy sees both rates' means over the use window, as the
gateway counts them. The rate's value cancels out: only arrivals against completions matter.
A request for an endpoint at zero wakes it at once (the gateway's fast path). The oracle knows the future: it
has exactly ``ceil(load / threshold)`` replicas Ready at every second (within minReplica and maxReplica, none
while idle when minReplica is 0), and its replica-minutes are the floor no autoscaler can beat.

``hpa_like`` is the baseline the benchmark replays beside Dais's policy: Kubernetes HPA's proportional rule
with a 10 % tolerance both ways and a 300-s scale-down window, evaluated every tick (reference/autoscaling.md
§2). HPA has no scale to zero: at zero, and for the idle rule, it defers to Dais's own rules.
"""

from __future__ import annotations

import csv
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from autoscaler.policy import Decision, PolicyConfig, Samples, ScalingRules, State, decide

Policy = Callable[[ScalingRules, Samples, State, datetime, PolicyConfig], Decision]

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
OSCILLATION_WINDOW_S = 300  # a change undone within this long is an oscillation
SERVICE_RPS = 2.0  # requests per second one replica completes at 100 % use


@dataclass(frozen=True, slots=True)
class Trace:
    points: list[tuple[float, float, float]]  # (t_s, load percent, requests in flight), sorted
    spec: dict[str, float]

    @classmethod
    def read(cls, path: Path) -> Trace:
        spec: dict[str, float] = {}
        rows: list[str] = []
        for line in path.read_text().splitlines():
            if line.startswith("#"):
                for item in line[1:].split():
                    key, _, value = item.partition("=")
                    if value:
                        spec[key] = float(value)
            elif line.strip():
                rows.append(line)
        points = []
        for number, row in enumerate(csv.DictReader(rows), start=2):
            try:
                load = float(row["load"])
                requests = float(row["requests"]) if row.get("requests") not in (None, "") else load / 100
                points.append((float(row["t_s"]), load, requests))
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{path}: data row {number - 1}: needs numeric t_s and load ({exc})") from exc
        if not points:
            raise ValueError(f"{path}: no data rows (header t_s,load[,requests])")
        return cls(sorted(points), spec)

    @property
    def duration_s(self) -> int:
        return int(self.points[-1][0]) + 1


@dataclass(frozen=True, slots=True)
class Change:
    t_s: int
    previous: int
    replicas: int
    reason: str


@dataclass
class Result:
    changes: list[Change] = field(default_factory=list)
    timeline: list[tuple[int, float, int, int]] = field(default_factory=list)  # (t_s, load, ready, desired)
    replica_s: float = 0.0  # replicas running (Ready or starting) integrated over time
    oracle_replica_s: float = 0.0
    overloaded_s: int = 0  # seconds with more work than the Ready replicas could do
    hot_s: int = 0  # seconds with the Ready replicas above the threshold (the spec's promise broken, if not overloaded)
    reaction_s: list[float] = field(default_factory=list)  # sustained load above threshold → scale-up decision

    @property
    def oscillations(self) -> int:
        """Changes undone (up then down, or down then up) within ``OSCILLATION_WINDOW_S``."""
        count = 0
        for before, after in zip(self.changes, self.changes[1:], strict=False):
            undone = (before.replicas - before.previous) * (after.replicas - after.previous) < 0
            if undone and after.t_s - before.t_s < OSCILLATION_WINDOW_S:
                count += 1
        return count

    def summary(self) -> dict[str, Any]:
        return {
            "decisions": len(self.changes),
            "replica_minutes": round(self.replica_s / 60, 1),
            "oracle_replica_minutes": round(self.oracle_replica_s / 60, 1),
            "cost_vs_oracle_ratio": round(self.replica_s / self.oracle_replica_s, 2) if self.oracle_replica_s else None,
            "oscillations": self.oscillations,
            "overloaded_s": self.overloaded_s,
            "above_threshold_s": self.hot_s,
            "scale_up_reaction_max_s": max(self.reaction_s) if self.reaction_s else None,
            "scale_up_reactions": len(self.reaction_s),
        }


def simulate(
    trace: Trace,
    spec: ScalingRules,
    config: PolicyConfig,
    *,
    startup_s: float = 90.0,
    tick_s: float = 15.0,
    pending_window_s: float = 20.0,
    policy: Policy = decide,
) -> Result:
    window_s = config.utilization_window_s
    result = Result()
    threshold = spec.pending_requests if spec.pending_requests is not None else spec.hardware_usage
    threshold = threshold if threshold is not None else config.hardware_usage
    initial = max(spec.min_replica, 1)
    desired = initial
    ready_at: list[float] = [-3600.0] * initial  # when each replica turns (or turned) Ready
    state = State(replicas=initial, since=EPOCH)
    use: deque[tuple[int, float]] = deque()  # (t, per-replica use %) while some replica was Ready
    requests: deque[tuple[int, float]] = deque()
    rates: deque[tuple[int, float, float]] = deque()  # (t, arriving, completed) requests per second
    last_request: datetime | None = None
    above_since: int | None = None
    index = 0
    next_tick = 0.0
    for t in range(trace.duration_s):
        while index + 1 < len(trace.points) and trace.points[index + 1][0] <= t:
            index += 1
        _, load, in_flight = trace.points[index]
        now = EPOCH + timedelta(seconds=t)
        if in_flight > 0 or load > 0:
            last_request = now
        ready = sum(1 for at in ready_at if at <= t)
        starting = len(ready_at) - ready
        newest_ready = max((at for at in ready_at if at <= t), default=None)
        if ready:
            use.append((t, min(100.0, load / ready)))
        requests.append((t, in_flight))
        rates.append((t, load / 100 * SERVICE_RPS, min(load, ready * 100.0) / 100 * SERVICE_RPS))
        while use and use[0][0] <= t - window_s:
            use.popleft()
        while rates and rates[0][0] <= t - window_s:
            rates.popleft()
        while requests and requests[0][0] <= t - pending_window_s:
            requests.popleft()
        result.overloaded_s += load > ready * 100
        result.replica_s += len(ready_at)
        needed = math.ceil(load / threshold) if spec.pending_requests is None else math.ceil(in_flight / threshold)
        if needed or spec.min_replica or spec.scale_to_zero_timeout_min is None:
            needed = max(needed, spec.min_replica, 1)
        result.oracle_replica_s += min(needed, spec.max_replica)

        # Sustained load above the threshold on what is Ready now, and room to grow: the reaction clock runs.
        per_replica = (load / max(ready, 1)) if spec.pending_requests is None else in_flight / max(ready, 1)
        result.hot_s += per_replica > threshold and (load > 0 or in_flight > 0)
        if per_replica > threshold and desired < spec.max_replica and ready == desired:
            above_since = t if above_since is None else above_since
        else:
            above_since = None

        wake = desired == 0 and (in_flight > 0 or load > 0)
        if wake or t >= next_tick:
            if not wake:
                next_tick += tick_s
            samples = Samples(
                ready=ready,
                starting=starting,
                utilization=sum(u for _, u in use) / len(use) if use and ready else None,
                pending_per_replica=(sum(r for _, r in requests) / len(requests)) / max(ready, 1),
                in_flight=math.ceil(in_flight),
                last_request=last_request,
                wake=wake,
                ready_for_s=t - newest_ready if newest_ready is not None else None,
                arrival_rps=sum(a for _, a, _ in rates) / len(rates),
                completion_rps=sum(c for _, _, c in rates) / len(rates),
            )
            decision = policy(spec, samples, state, now, config)
            assert decision.state is not None
            state = decision.state
            if decision.replicas != desired:
                if decision.replicas > desired and above_since is not None:
                    result.reaction_s.append(t - above_since)
                    above_since = None
                result.changes.append(Change(t, desired, decision.replicas, decision.reason))
                if decision.replicas > desired:
                    ready_at += [t + startup_s] * (decision.replicas - desired)
                else:
                    ready_at = sorted(ready_at)[: decision.replicas]  # the starting ones (latest) go first
                desired = decision.replicas
        result.timeline.append((t, load, ready, desired))
    return result


def hpa_like(spec: ScalingRules, samples: Samples, state: State, now: datetime, config: PolicyConfig) -> Decision:
    """Kubernetes HPA's rule on the same signal: ``ceil(ready × value / threshold)`` unless within 10 % of the
    threshold, starting replicas counting as 0 % on the way up, down only to the highest recommendation of the
    last 300 s; every tick, no scale-up interval."""
    current = state.replicas
    if spec.paused or current == 0:  # pause, and waking from zero: Dais's rules (HPA has neither)
        return decide(spec, samples, state, now, config)
    if spec.min_replica == 0 and (idle := decide(spec, samples, state, now, config)).replicas == 0:
        return idle  # the idle timeout: Dais's rule too
    if spec.pending_requests is not None:
        value, threshold = samples.pending_per_replica, spec.pending_requests
    else:
        value = samples.utilization
        threshold = spec.hardware_usage if spec.hardware_usage is not None else config.hardware_usage
    window = tuple((t, r) for t, r in state.recommendations if (now - t).total_seconds() < config.stabilization_s)
    if value is None or not samples.ready:
        return Decision(current, current, current, "hpa: no data", {}, replace(state, recommendations=window))
    ratio = value / threshold
    wanted = current if abs(1 - ratio) <= config.tolerance else math.ceil(samples.ready * ratio)
    # Unready pods count as 0 % on the way up: if that brings the ratio back within the tolerance, hold.
    if wanted > current and samples.starting:
        rebalanced = value * samples.ready / ((samples.ready + samples.starting) * threshold)
        if rebalanced <= 1 + config.tolerance:
            wanted = current
    window = (*window, (now, wanted))
    final = wanted if wanted > current else min(current, max(r for _, r in window))
    final = max(max(spec.min_replica, 1), min(spec.max_replica, final))
    return Decision(
        final,
        wanted,
        final,
        f"hpa: {value:.1f} against {threshold:g}",
        {},
        replace(state, replicas=final, recommendations=window),
    )


def scaling_for(trace: Trace, overrides: dict[str, float | None]) -> ScalingRules:
    spec = {**trace.spec, **{k: v for k, v in overrides.items() if v is not None}}
    timeout = spec.get("scaleToZeroTimeout")
    return ScalingRules(
        min_replica=int(spec.get("minReplica", 1)),
        max_replica=int(spec.get("maxReplica", 8)),
        scale_to_zero_timeout_min=int(timeout) if timeout is not None else None,
        hardware_usage=spec.get("hardwareUsage"),
        pending_requests=spec.get("pendingRequests"),
    )


def plot(result: Result, trace_name: str, threshold: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = [t / 3600 for t, *_ in result.timeline]
    figure, axes = plt.subplots(figsize=(11, 4.5))
    axes.plot(
        hours,
        [load / threshold for _, load, _, _ in result.timeline],
        color="0.6",
        lw=1,
        label="load (replicas needed)",
    )
    axes.step(hours, [desired for *_, desired in result.timeline], where="post", color="tab:blue", label="desired")
    axes.step(hours, [ready for _, _, ready, _ in result.timeline], where="post", color="tab:green", label="ready")
    axes.set_xlabel("hours")
    axes.set_ylabel("replicas")
    axes.set_title(f"{trace_name}: {len(result.changes)} decisions, {result.oscillations} oscillations")
    axes.legend(loc="upper left")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
