"""One autoscaler tick for every endpoint: read, sample once per signal, decide, write in one transaction.

The desired count and the policy's memory go to ``endpoint_scaling``; a ``scaling_decisions`` row is written
whenever the count changes, with the inputs, raw, stabilized and final counts and the reason. The controller
applies the count. Endpoints the user paused or scaled to zero are left to the controller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import Endpoint, EndpointScaling, EndpointStatus, ScalingDecision
from api.db.session import transaction
from autoscaler.policy import Decision, PolicyConfig, Samples, Scaling, State, decide


@dataclass(frozen=True, slots=True)
class Target:
    """What a source needs to know to sample one endpoint."""

    id: str
    namespace: str
    name: str
    ready: int
    starting: int


class Source(Protocol):
    def samples(self, targets: Sequence[Target], now: datetime) -> Mapping[str, Samples]:
        """Samples per endpoint id, with a constant number of queries however many targets there are."""
        ...


@dataclass
class Ticker:
    sessions: sessionmaker[Session]
    source: Source
    config: PolicyConfig
    clock: Callable[[], datetime]

    def tick(self) -> list[tuple[str, Decision]]:
        now = self.clock()
        with transaction(self.sessions) as session:
            rows = session.execute(
                select(Endpoint, EndpointStatus, EndpointScaling)
                .outerjoin(EndpointStatus, EndpointStatus.endpoint_id == Endpoint.id)
                .outerjoin(EndpointScaling, EndpointScaling.endpoint_id == Endpoint.id)
                .where(Endpoint.deleted_at.is_(None), Endpoint.scaled_to_zero.is_(False))
            ).all()
            targets = [
                Target(
                    id=endpoint.id,
                    namespace=endpoint.namespace,
                    name=endpoint.name,
                    ready=status.ready_replica if status else 0,
                    starting=max((status.target_replica - status.ready_replica) if status else 0, 0),
                )
                for endpoint, status, _ in rows
            ]
            sampled = self.source.samples(targets, now)
            made = []
            for (endpoint, _, scaling), target in zip(rows, targets, strict=True):
                spec = Scaling.from_spec(endpoint.spec, paused=endpoint.paused)
                state = _state_of(scaling, spec, endpoint.created_at)
                samples = sampled.get(endpoint.id) or Samples(ready=target.ready, starting=target.starting)
                decision = decide(spec, samples, state, now, self.config)
                self._record(session, endpoint.id, scaling, decision, previous=state.replicas, now=now)
                made.append((endpoint.id, decision))
        return made

    @staticmethod
    def _record(
        session: Session,
        endpoint_id: str,
        scaling: EndpointScaling | None,
        decision: Decision,
        *,
        previous: int,
        now: datetime,
    ) -> None:
        assert decision.state is not None
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
        elif scaling.state != stored or scaling.replicas != decision.replicas:
            scaling.replicas = decision.replicas
            scaling.state = stored
            scaling.reason = decision.reason
            scaling.updated_at = now
        if scaling is None or decision.replicas != previous:
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


def _state_of(scaling: EndpointScaling | None, spec: Scaling, created: datetime) -> State:
    if scaling is None:
        return State(replicas=max(spec.min_replica, 1), since=created)
    raw: dict[str, Any] = scaling.state
    return State(
        replicas=scaling.replicas,
        since=_when(raw.get("since")) or created,
        last_up=_when(raw.get("lastUp")),
        last_down=_when(raw.get("lastDown")),
        recommendations=tuple((_when(t) or created, int(r)) for t, r in raw.get("recommendations", [])),
    )


def _state_json(state: State) -> dict[str, Any]:
    return {
        "since": state.since.isoformat(),
        "lastUp": state.last_up.isoformat() if state.last_up else None,
        "lastDown": state.last_down.isoformat() if state.last_down else None,
        "recommendations": [[t.isoformat(), r] for t, r in state.recommendations],
    }


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
