"""One tick on a real Postgres: desired counts and decision records written together, only on change."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from autoscaler.policy import PolicyConfig, Samples
from autoscaler.sources import Measured, ScaleTarget, Traffic, gateway_activity
from autoscaler.tick import Ticker
from core.db.models import EndpointActivity, EndpointScaling, FeedEvent, ScalingDecision
from tests.conftest import Clock
from tests.factories import endpoint_body


class GivenSamples:
    """Samples the test chooses, standing in for Prometheus (queried once per tick for all targets)."""

    def __init__(self) -> None:
        self.utilization = 50.0
        self.calls = 0

    def measure(self, targets: Sequence[ScaleTarget], now: datetime) -> Measured:
        return Measured()

    def samples(
        self, session: Session, targets: Sequence[ScaleTarget], measured: Measured, now: datetime
    ) -> Mapping[str, Samples]:
        self.calls += 1
        return {
            t.id: Samples(ready=t.ready or 1, utilization=self.utilization, in_flight=1, last_request=now)
            for t in targets
        }


def test_a_tick_writes_the_count_and_a_decision_only_when_it_changes(
    client: TestClient, db: sessionmaker[Session], clock: Clock
) -> None:
    body = endpoint_body("scaled")
    body["compute"]["scaling"] = {"minReplica": 1, "maxReplica": 4}
    assert client.post("/v2/endpoint/admin", json=body).status_code == 200
    source = GivenSamples()
    ticker = Ticker(sessions=db, source=source, config=PolicyConfig(), clock=clock)

    ticker.tick()
    clock.now += timedelta(seconds=60)
    source.utilization = 100.0
    ((_, decision),) = ticker.tick()
    assert decision.replicas == 2
    clock.now += timedelta(seconds=30)
    ticker.tick()  # not due: nothing changes

    with db() as session:
        scaling = session.scalar(select(EndpointScaling))
        decisions = session.scalars(select(ScalingDecision).order_by(ScalingDecision.id)).all()
    assert scaling is not None
    assert scaling.replicas == 2
    assert [(d.previous, d.final) for d in decisions] == [(1, 1), (1, 2)]
    assert decisions[-1].reason == "hardware use % 100.0 above 80 on 1 replicas: up to 2"
    assert decisions[-1].inputs["utilization"] == 100.0
    assert source.calls == 3


def test_gateway_figures_are_summed_over_fresh_rows_and_a_gone_gateways_keep_only_the_last_request() -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

    def row(gateway: str, age_s: float, **figures: float) -> EndpointActivity:
        at = now - timedelta(seconds=age_s)
        return EndpointActivity(
            endpoint_id="e", gateway=gateway, last_request_at=at, updated_at=at, **{"in_flight": 0, **figures}
        )

    rows = [
        row("a", 5, in_flight=2, pending_mean=1.5, arrival_rps=4.0, completion_rps=2.0),
        row("b", 1, in_flight=1, pending_mean=0.5, arrival_rps=2.0, completion_rps=1.0),
        row("gone", 90, in_flight=7, pending_mean=7.0, arrival_rps=9.0, completion_rps=9.0),
    ]
    traffic = gateway_activity(rows, now=now)["e"]
    assert traffic == Traffic(now - timedelta(seconds=1), 3, 2.0, 6.0, 3.0)


class Idle(GivenSamples):
    """An endpoint nobody has called for ten minutes."""

    def samples(
        self, session: Session, targets: Sequence[ScaleTarget], measured: Measured, now: datetime
    ) -> Mapping[str, Samples]:
        return {
            t.id: Samples(ready=1, utilization=0.0, in_flight=0, last_request=now - timedelta(minutes=10))
            for t in targets
        }


def test_going_to_zero_is_an_audit_event_and_every_decision_is_in_the_live_feed(
    client: TestClient, db: sessionmaker[Session], clock: Clock
) -> None:
    body = endpoint_body("sleepy")
    body["compute"]["scaling"] = {"minReplica": 0, "maxReplica": 2, "scaleToZeroTimeout": 5}
    assert client.post("/v2/endpoint/admin", json=body).status_code == 200
    clock.now += timedelta(minutes=10)
    ticker = Ticker(sessions=db, source=Idle(), config=PolicyConfig(), clock=clock)
    ((_, decision),) = ticker.tick()
    assert decision.replicas == 0

    events = client.get("/v2/audit-logs/admin", params={"endpoint": "sleepy", "actor": "autoscaler"}).json()["items"]
    assert [e["action"] for e in events] == ["scaleToZero"]
    assert events[0]["diff"][0] == {"path": "replicas", "old": 1, "new": 0}
    assert events[0]["diff"][1]["new"].startswith("scaled to zero: no request for 10.0 min")
    with db() as session:
        fed = session.scalars(select(FeedEvent).where(FeedEvent.name == "sleepy")).all()
    assert [(e.kind, e.body["replicas"]) for e in fed] == [("decision", 0)]
