"""One autoscaler tick for every endpoint: read, measure once per signal, then read again, decide and write
in one transaction; and the wake fast path for one endpoint.

No transaction is open while the sources go over the network (Prometheus, the pod list, the engines): a
short one reads what to measure, the measuring runs with no connection held, and the tick's transaction
re-reads every endpoint, its status and scaling state, and the gateway's activity, so the decision is made
on what is stored at that moment. An endpoint created or moved to other hardware meanwhile has no hardware
use this tick (missing data, which never scales down).

The desired count and the policy's memory go to ``endpoint_scaling``; a ``scaling_decisions`` row is written
whenever the count changes, with the inputs, raw, stabilized and final counts and the reason. The controller
applies the count. Paused endpoints are left to the controller. An endpoint the user scaled to zero stays at
zero until a request arrives: a wake (or, should the wake be lost, a tick seeing a request in flight) gives it
a replica and clears the user's flag, as the hosted product does.

Ticks and wakes of one process take turns (a lock), so a wake is never overwritten by a tick that read the
endpoint before it; only the lease holder runs either, and each checks it still leads before committing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from autoscaler import metrics
from autoscaler.policy import Decision, PolicyConfig, Samples, ScalingRules, State, decide
from autoscaler.sources import Measured, ScaleTarget
from core.db import feed
from core.db.models import Endpoint, EndpointScaling, EndpointStatus, ScalingDecision
from core.db.session import transaction
from core.db.writes import component_event, woken_from_zero
from core.leadership import NotLeader

WAKE_REASON = "woken: a request arrived while scaled to zero"


class Source(Protocol):
    def measure(self, targets: Sequence[ScaleTarget], now: datetime) -> Measured:
        """What comes over the network; called with no transaction open."""
        ...

    def samples(
        self, session: Session, targets: Sequence[ScaleTarget], measured: Measured, now: datetime
    ) -> Mapping[str, Samples]:
        """Samples per endpoint id, with a constant number of queries however many targets there are."""
        ...


@dataclass
class Ticker:
    sessions: sessionmaker[Session]
    source: Source
    config: PolicyConfig
    clock: Callable[[], datetime]
    is_leader: Callable[[], bool] = lambda: True
    lock: threading.Lock = field(default_factory=threading.Lock)

    def tick(self) -> list[tuple[str, Decision]]:
        with transaction(self.sessions) as session:
            measuring = _to_measure(session)
        # The network, with no transaction open and without the lock: a wake does not wait on Prometheus.
        measured = self.source.measure(measuring, self.clock())
        with self.lock:
            now = self.clock()
            with transaction(self.sessions) as session:
                return self._decide(session, measuring, measured, now)

    def _decide(
        self, session: Session, measuring: list[ScaleTarget], measured: Measured, now: datetime
    ) -> list[tuple[str, Decision]]:
        """Decisions on the endpoints as stored now, with what was measured of those that kept their hardware."""
        rows = _live(session)
        targets = _targets(rows)
        gpu = {target.id: target.gpu for target in measuring}
        moved = {target.id for target in targets if gpu.get(target.id, target.gpu) != target.gpu}
        sampled = self.source.samples(session, targets, measured.without(moved), now)
        made = []
        events: list[feed.Event] = []
        for (endpoint, _, scaling), target in zip(rows, targets, strict=True):
            samples = sampled.get(endpoint.id) or Samples(ready=target.ready, starting=target.starting)
            if endpoint.scaled_to_zero:
                if samples.in_flight:
                    made.append((endpoint.id, self._wake(session, endpoint, scaling, now, events)))
                continue
            spec = ScalingRules.from_spec(endpoint.spec, paused=endpoint.paused)
            state = _state_of(scaling, spec, endpoint.created_at)
            decision = decide(spec, samples, state, now, self.config)
            self._record(session, endpoint, scaling, decision, previous=state.replicas, now=now, events=events)
            made.append((endpoint.id, decision))
        if not self.is_leader():
            raise NotLeader("lost the autoscaler lease; not committing this tick")
        feed.publish(session, events, now=now)  # last: it serializes the feed's writers until the commit
        return made

    def wake(self, endpoint_id: str) -> Decision | None:
        """The fast path: an endpoint at zero gets a replica now. None when it is not at zero, paused or gone."""
        with self.lock, transaction(self.sessions) as session:
            row = session.execute(
                select(Endpoint, EndpointScaling)
                .outerjoin(EndpointScaling, EndpointScaling.endpoint_id == Endpoint.id)
                .where(Endpoint.id == endpoint_id, Endpoint.deleted_at.is_(None))
            ).one_or_none()
            if row is None or row[0].paused:
                return None  # pause wins: a request for a paused endpoint wakes nothing
            endpoint, scaling = row
            if not endpoint.scaled_to_zero and (scaling is None or scaling.replicas > 0):
                return None
            events: list[feed.Event] = []
            now = self.clock()
            decision = self._wake(session, endpoint, scaling, now, events)
            if not self.is_leader():
                raise NotLeader("lost the autoscaler lease; not committing this wake")
            feed.publish(session, events, now=now)
        return decision

    def _wake(
        self,
        session: Session,
        endpoint: Endpoint,
        scaling: EndpointScaling | None,
        now: datetime,
        events: list[feed.Event],
    ) -> Decision:
        spec = ScalingRules.from_spec(endpoint.spec, paused=False)
        state = _state_of(scaling, spec, endpoint.created_at)
        replicas = min(max(spec.min_replica, 1), spec.max_replica)
        woke = State(replicas=replicas, since=state.since, last_up=now, last_down=now)
        decision = Decision(replicas, replicas, replicas, WAKE_REASON, {"wake": True}, woke)
        previous = 0 if endpoint.scaled_to_zero else state.replicas
        self._record(session, endpoint, scaling, decision, previous=previous, now=now, events=events)
        if endpoint.scaled_to_zero:
            woken_from_zero(session, endpoint, actor="autoscaler", now=now)
        return decision

    @staticmethod
    def _record(
        session: Session,
        endpoint: Endpoint,
        scaling: EndpointScaling | None,
        decision: Decision,
        *,
        previous: int,
        now: datetime,
        events: list[feed.Event],
    ) -> None:
        """The desired count and the policy's memory; a decision row (and the feed's event) when the count
        changes; the audit log's event when it goes to zero."""
        assert decision.state is not None
        endpoint_id = endpoint.id
        stored = _state_json(decision.state)
        if scaling is None:
            session.add(
                EndpointScaling(
                    endpoint_id=endpoint_id,
                    replicas=decision.replicas,
                    state=stored,
                    reason=decision.reason,
                    updated_at=now,
                )
            )
        elif (
            scaling.state != stored
            or scaling.replicas != decision.replicas
            # Missing data holds the state still: keep the shown reason current anyway (it then reads the same
            # every tick, so this writes once, not every tick).
            or (decision.inputs.get("missing") and scaling.reason != decision.reason)
        ):
            scaling.replicas = decision.replicas
            scaling.state = stored
            scaling.reason = decision.reason
            scaling.updated_at = now
        if scaling is None or decision.replicas != previous:
            if decision.replicas != previous:
                metrics.DECISIONS.labels(direction="up" if decision.replicas > previous else "down").inc()
            session.add(
                ScalingDecision(
                    endpoint_id=endpoint_id,
                    at=now,
                    previous=previous,
                    raw=decision.raw,
                    stabilized=decision.stabilized,
                    final=decision.replicas,
                    reason=decision.reason,
                    inputs=decision.inputs,
                )
            )
            body = {
                "name": endpoint.name,
                "previous": previous,
                "replicas": decision.replicas,
                "reason": decision.reason,
            }
            events.append(feed.Event(endpoint.namespace, endpoint_id, endpoint.name, "decision", body))
            if decision.replicas == 0 and previous > 0:
                component_event(
                    session,
                    endpoint_id=endpoint_id,
                    namespace=endpoint.namespace,
                    actor="autoscaler",
                    action="scaleToZero",
                    diff=[{"path": "replicas", "old": previous, "new": 0}, {"path": "reason", "new": decision.reason}],
                    now=now,
                )


Live = tuple[Endpoint, EndpointStatus | None, EndpointScaling | None]


def _live(session: Session) -> list[Live]:
    """Every live, unpaused endpoint with its status and scaling state."""
    rows = session.execute(
        select(Endpoint, EndpointStatus, EndpointScaling)
        .outerjoin(EndpointStatus, EndpointStatus.endpoint_id == Endpoint.id)
        .outerjoin(EndpointScaling, EndpointScaling.endpoint_id == Endpoint.id)
        .where(Endpoint.deleted_at.is_(None), Endpoint.paused.is_(False))
    )
    return [(endpoint, status, scaling) for endpoint, status, scaling in rows]


def _targets(rows: Sequence[Live]) -> list[ScaleTarget]:
    return [
        _target(
            endpoint.id,
            endpoint.spec["compute"].get("accelerator"),
            *((status.ready_replica, status.target_replica, status.addresses) if status else (None, None, None)),
        )
        for endpoint, status, _ in rows
    ]


def _to_measure(session: Session) -> list[ScaleTarget]:
    """The targets of ``_live``'s endpoints, reading only the columns measuring needs."""
    rows = session.execute(
        select(
            Endpoint.id,
            Endpoint.spec["compute"]["accelerator"].as_string(),
            EndpointStatus.ready_replica,
            EndpointStatus.target_replica,
            EndpointStatus.addresses,
        )
        .outerjoin(EndpointStatus, EndpointStatus.endpoint_id == Endpoint.id)
        .where(Endpoint.deleted_at.is_(None), Endpoint.paused.is_(False))
    )
    return [_target(*row) for row in rows]


def _target(
    endpoint_id: str, accelerator: str | None, ready: int | None, target: int | None, addresses: list[str] | None
) -> ScaleTarget:
    return ScaleTarget(
        id=endpoint_id,
        ready=ready or 0,
        starting=max((target or 0) - (ready or 0), 0),
        gpu=accelerator == "gpu",
        addresses=tuple(addresses or ()),
    )


def _state_of(scaling: EndpointScaling | None, spec: ScalingRules, created: datetime) -> State:
    if scaling is None:
        return State(replicas=max(spec.min_replica, 1), since=created)
    raw: dict[str, Any] = scaling.state
    return State(
        replicas=scaling.replicas,
        since=_when(raw.get("since")) or created,
        last_up=_when(raw.get("lastUp")),
        last_down=_when(raw.get("lastDown")),
        recommendations=tuple((_when(t) or created, int(r)) for t, r in raw.get("recommendations", [])),
        carry=raw.get("carry"),
        steady=(_when(raw["steady"][0]) or created, float(raw["steady"][1])) if raw.get("steady") else None,
    )


def _state_json(state: State) -> dict[str, Any]:
    return {
        "since": state.since.isoformat(),
        "lastUp": state.last_up.isoformat() if state.last_up else None,
        "lastDown": state.last_down.isoformat() if state.last_down else None,
        "recommendations": [[t.isoformat(), r] for t, r in state.recommendations],
        "carry": state.carry,
        "steady": [state.steady[0].isoformat(), state.steady[1]] if state.steady else None,
    }


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
