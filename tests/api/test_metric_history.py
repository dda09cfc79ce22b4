"""GET /v2/endpoint/{ns}/{name}/metrics on the embedded store, through HTTP on Postgres (and once on SQLite):
samples written by the gateway's and the controller's own writers at controlled times, then read back as aligned
arrays: rates, gauges, percentiles from summed buckets, the rollup after a day and the pruning after a week."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, sessionmaker

import migrations
from api.bootstrap import ensure_admin
from api.main import build_state, create_app
from controller.history import ReplicaSampler
from controller.local import ReplicaUse
from core.db.metric_samples import BUCKETS, RAW, AlreadyWritten, Traffic
from core.db.models import Endpoint, EndpointStatus, metric_samples
from core.settings import HubSettings, Settings
from gateway import metrics
from gateway.history import TrafficHistory, write_samples
from tests.conftest import Clock
from tests.factories import ADMIN_TOKEN, endpoint_body
from tests.fixtures.hub import HubServer
from tests.fixtures.metric_history import fill_history
from tests.test_sqlite_smoke import LOCAL

MINUTE = 60


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create(client: TestClient, sessions: sessionmaker[Session], name: str) -> str:
    assert client.post("/v2/endpoint/admin", json=endpoint_body(name)).status_code == 200
    with sessions() as session:
        found = session.scalar(select(Endpoint.id).where(Endpoint.name == name, Endpoint.deleted_at.is_(None)))
    assert found is not None
    return found


def minute_after(moment: datetime) -> int:
    """The first whole minute after ``moment``, in Unix seconds."""
    return (int(moment.timestamp()) // MINUTE + 1) * MINUTE


def at(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def durations(**by_bucket: int) -> tuple[int, ...]:
    """Requests per bucket of the latency histogram, by index (``b3=50``: fifty in (5, 10] ms)."""
    counts = [0] * BUCKETS
    for name, count in by_bucket.items():
        counts[int(name[1:])] = count
    return tuple(counts)


def status(sessions: sessionmaker[Session], endpoint_id: str, *, ready: int, target: int, now: datetime) -> None:
    """What the controller writes of the endpoint's replicas (its sampler reads it back)."""
    with sessions.begin() as session:
        session.merge(
            EndpointStatus(
                endpoint_id=endpoint_id,
                state="running",
                ready_replica=ready,
                target_replica=target,
                observed_generation=1,
                conditions=[],
                updated_at=now,
            )
        )


def metrics_of(client: TestClient, name: str = "hist", **params: Any) -> dict[str, Any]:
    answer = client.get(f"/v2/endpoint/admin/{name}/metrics", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@pytest.fixture
def gateway_series() -> Iterator[metrics.Series]:
    """The gateway's in-process figures of admin/hist, as its proxy counts them."""
    yield metrics.series("admin/hist")
    metrics.drop_endpoint("admin/hist")


def test_samples_come_back_as_aligned_rates_gauges_and_percentiles(
    client: TestClient, db: sessionmaker[Session], clock: Clock, gateway_series: metrics.Series
) -> None:
    ident = create(client, db, "hist")
    base = minute_after(clock.now)  # 12:01:00
    history = TrafficHistory()
    history.sample(lambda _: ident)  # the figures so far are the baseline
    # One gateway replica, through its sampler: in each 10 s of the minute after base, 3 answers 2xx and one 5xx,
    # half in (5, 10] ms and half in (50, 100] ms, and 2 requests pending when sampled.
    gateway_series.pending = 2
    for tick in range(1, 7):
        for status_code, ms in ((200, 7.0), (200, 70.0), (200, 8.0), (500, 80.0)):
            gateway_series.answered(status_code, ms)
        gateway_series.completion += 10
        write_samples(db, [(base + tick * RAW, history.sample(lambda _: ident))], source="gw-1")
    gateway_series.pending = 0
    # Another gateway replica, once in that minute: summed at read time.
    write_samples(db, [(base + 30, [Traffic(ident, requests=(6, 0, 0, 0), durations=durations(b3=6))])], source="gw-2")
    # The controller: 2 of 3 replicas ready, 1.5 cores and 2 GB between them.
    status(db, ident, ready=2, target=3, now=clock.now)
    sampler = ReplicaSampler(db, clock=clock, use=lambda: {ident: ReplicaUse(2, 1.5, 2e9)})
    for tick in range(1, 7):
        assert sampler.sample(base + tick * RAW) == 1

    clock.now += timedelta(minutes=10)
    body = metrics_of(client, **{"from": at(base), "to": at(base + 2 * MINUTE), "step": "1m"})
    assert body["source"] == "embedded"
    assert body["step"] == 60
    assert body["timestamps"] == [at(base)[:-1] + ".000Z", at(base + 60)[:-1] + ".000Z", at(base + 120)[:-1] + ".000Z"]
    assert (body["from"], body["to"]) == (body["timestamps"][0], body["timestamps"][-1])
    series = body["series"]
    # Each figure covers the minute that ends at its timestamp: the samples are all in the second one.
    assert series["requests_2xx"] == [0.0, pytest.approx((18 + 6) / 60), 0.0]
    assert series["requests_5xx"] == [0.0, pytest.approx(6 / 60), 0.0]
    assert series["requests_4xx"] == [0.0, 0.0, 0.0]
    assert series["tokens_out"] == [0.0, 1.0, 0.0]
    assert series["pending"] == [0.0, 2.0, 0.0]
    assert series["replicas_ready"] == [0.0, 2.0, 0.0]
    assert series["replicas_desired"] == [0.0, 3.0, 0.0]
    assert series["cpu_cores"] == [None, 0.75, None]  # per replica; nothing measured is no data, not zero
    assert series["memory_bytes"] == [None, 1e9, None]
    assert series["gpu_percent"] == [None, None, None]
    # 12 + 6 requests in (5, 10] ms, 12 in (50, 100]: percentiles interpolate inside the bucket, as Prometheus does.
    assert series["latency_p50_ms"][1] == pytest.approx(5 + 5 * 15 / 18)
    assert series["latency_p90_ms"][1] == pytest.approx(50 + 50 * (0.9 * 30 - 18) / 12)
    assert series["latency_p99_ms"][1] == pytest.approx(50 + 50 * (0.99 * 30 - 18) / 12)
    assert series["latency_p50_ms"][0] is None

    # 10-s steps: each sample in its own; timestamps are multiples of the step, inside the range.
    fine = metrics_of(client, **{"from": at(base + 3), "to": at(base + 60), "step": "10", "series": "requests_2xx"})
    assert list(fine["series"]) == ["requests_2xx"]
    assert fine["timestamps"][0] == at(base + 10)[:-1] + ".000Z"
    assert fine["series"]["requests_2xx"] == [0.3, 0.3, 0.9, 0.3, 0.3, 0.3]
    # A step that is not a multiple of the samples' 10 s is rounded up to one.
    assert metrics_of(client, **{"from": at(base), "to": at(base + 60), "step": "15s"})["step"] == 20

    # Null outside the endpoint's life: before it was created, and after now.
    around = metrics_of(
        client,
        **{"from": at(base - 5 * MINUTE), "to": at(int(clock.now.timestamp()) + 10 * MINUTE), "step": "5m"},
    )
    values = around["series"]["requests_2xx"]
    assert values[0] is None  # 11:55: the endpoint did not exist
    assert values[1] == pytest.approx(24 / 300)
    assert values[-1] is None  # after now


def test_the_default_range_and_step_and_the_refusals(
    client: TestClient, db: sessionmaker[Session], clock: Clock, alice: str
) -> None:
    create(client, db, "hist")
    body = metrics_of(client)
    assert body["step"] == 20  # the last hour in about 300 points at most
    assert len(body["timestamps"]) == 180
    assert set(body["series"]) >= {"requests_2xx", "latency_p99_ms", "replicas_ready", "gpu_memory_bytes"}
    assert all(len(values) == 180 for values in body["series"].values())
    week = metrics_of(client, **{"from": at(int((clock.now - timedelta(days=7)).timestamp()))})
    assert week["step"] == 3600

    def refused(field: str, **params: str) -> str:
        answer = client.get("/v2/endpoint/admin/hist/metrics", params=params)
        assert answer.status_code == 400, answer.text
        assert answer.json()["fields"][0]["field"] == field
        message: str = answer.json()["error"]
        return message

    now = int(clock.now.timestamp())
    too_many = refused("step", **{"from": at(now - 3600), "to": at(now + 3 * 86400), "step": "10s"})
    assert "at least 24 s (e.g. 30s)" in too_many
    assert "60, 30s, 5m" in refused("step", step="soon")
    assert "requests_2xx" in refused("series", series="requests,pending")
    assert "after from" in refused("to", **{"from": at(now), "to": at(now - 60)})
    assert "zone" in refused("from", **{"from": "2026-11-23T11:00:00"})
    assert "DAIS_PROMETHEUS__URL" in refused("source", source="prometheus")

    assert client.get("/v2/endpoint/admin/nope/metrics").status_code == 404
    assert client.get("/v2/endpoint/admin/hist/metrics", headers=bearer(alice)).status_code == 403
    assert client.get("/v2/endpoint/admin/nope/metrics", headers=bearer(alice)).status_code == 403


def test_a_day_at_one_minute_steps_reads_a_row_per_step(
    client: TestClient, db: sessionmaker[Session], clock: Clock
) -> None:
    ident = create(client, db, "hist")
    other = create(client, db, "other")
    base = minute_after(clock.now)
    day = 86400
    assert fill_history(db, [ident, other], start=base, end=base + day) == 2 * 2 * day // RAW
    statements: list[tuple[str, dict[str, Any], int]] = []
    bind = db.kw["bind"]

    def seen(_conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "metric_samples" in statement:
            statements.append((statement, parameters, cursor.rowcount))

    def read() -> dict[str, Any]:
        statements.clear()
        event.listen(bind, "after_cursor_execute", seen)
        try:
            return metrics_of(client, **{"from": at(base), "to": at(base + day), "step": "1m"})
        finally:
            event.remove(bind, "after_cursor_execute", seen)

    def sums() -> list[tuple[int, int]]:
        """Per range scan: the resolution it read, and the rows it sent back."""
        return [(params["resolution_1"], rows) for sql, params, rows in statements if "GROUP BY" in sql]

    clock.now = datetime.fromtimestamp(base + day + 5 * MINUTE, UTC)
    body = read()
    assert len(body["timestamps"]) == 1441
    series = body["series"]
    assert series["requests_2xx"] == [0.0] + [0.3] * 1440  # 3 per 10 s
    assert series["requests_4xx"][1:] == [0.1] * 1440
    assert series["replicas_ready"][1:] == [2.0] * 1440
    assert series["cpu_cores"][1:] == [0.75] * 1440
    assert series["latency_p50_ms"][1] == 10.0  # half in (5, 10] ms, half in (50, 100]
    assert sums() == [(10, 1440)], "nothing rolled up yet: the 10-s rows, summed in the database, a row per step"

    # The controller rolls the 10-s rows up into minutes (up to ten minutes ago, here): the same figures, read
    # from the minute rows, the newest steps from the 10-s rows.
    clock.now = datetime.fromtimestamp(base + day - 10 * MINUTE, UTC)
    ReplicaSampler(db, clock=clock).maintain()
    clock.now = datetime.fromtimestamp(base + day + 5 * MINUTE, UTC)
    assert read() == body
    (minutes, steps), (raw, newest) = sums()
    assert (minutes, raw) == (60, 10)
    assert steps + newest == 1440
    assert 10 <= newest <= 13


def test_samples_are_rolled_up_after_a_day_and_pruned_after_a_week(
    client: TestClient, db: sessionmaker[Session], clock: Clock
) -> None:
    ident = create(client, db, "hist")
    base = minute_after(clock.now) + 4 * MINUTE  # 12:05:00, a 5-minute boundary
    status(db, ident, ready=1, target=1, now=clock.now)
    sampler = ReplicaSampler(db, clock=clock)
    for tick in range(1, 61):  # ten minutes: two 5-minute windows
        requests = (2, 0, 1, 0) if tick <= 30 else (4, 0, 0, 0)
        write_samples(db, [(base + tick * RAW, [Traffic(ident, requests=requests, pending=1)])], source="gw")
        sampler.sample(base + tick * RAW)
    span = {"from": at(base), "to": at(base + 600), "series": "requests_2xx,requests_4xx,pending,replicas_ready"}

    def rows(resolution: int) -> int:
        with db() as session:
            c = metric_samples.c
            found = session.scalar(select(func.count()).where(c.endpoint_id == ident, c.resolution == resolution))
        return int(found or 0)

    clock.now += timedelta(minutes=20)
    assert sampler.maintain().rolled_up == 20 + 4  # minutes and 5-minute windows, of two sources
    fresh = metrics_of(client, step="5m", **span)
    assert (rows(10), rows(60), rows(300)) == (120, 20, 4), "the 10-s and minute rows stay for a day"
    assert metrics_of(client, step="1m", **span)["series"]["requests_2xx"] == [0.0] + [0.2] * 5 + [0.4] * 5

    clock.now += timedelta(days=1, hours=3)
    assert sampler.maintain().pruned == 120 + 20
    assert (rows(10), rows(60), rows(300)) == (0, 0, 4)
    later = metrics_of(client, step="1m", **span)
    assert later["step"] == 300, "older than a day: 5-minute steps"
    assert later["series"] == fresh["series"]
    assert later["series"] == {
        "requests_2xx": [0.0, 0.2, 0.4],
        "requests_4xx": [0.0, 0.1, 0.0],
        "pending": [0.0, 1.0, 1.0],
        "replicas_ready": [0.0, 1.0, 1.0],
    }

    clock.now += timedelta(days=6)
    assert sampler.maintain().pruned == 4
    assert rows(300) == 0
    gone = metrics_of(client, step="5m", **span)
    assert gone["series"]["requests_2xx"] == [None, None, None], "older than the store keeps: no data"


def test_the_embedded_store_on_sqlite(tmp_path: Path, hub_server: HubServer) -> None:
    clock = Clock()
    settings = Settings(home=tmp_path, admin_token=ADMIN_TOKEN, log_json=False, hub=HubSettings(url=hub_server.url))
    migrations.upgrade(settings.effective_database_url)
    state = build_state(settings, clock=clock)
    ensure_admin(state.sessions, settings, clock())
    with TestClient(create_app(settings, state=state), headers=bearer(ADMIN_TOKEN)) as client:
        assert client.post("/v2/endpoint/admin", json=endpoint_body("hist", **LOCAL)).status_code == 200
        with state.sessions() as session:
            ident = session.scalar(select(Endpoint.id).where(Endpoint.name == "hist"))
        assert ident is not None
        base = minute_after(clock.now) + 4 * MINUTE
        status(state.sessions, ident, ready=1, target=2, now=clock.now)
        sampler = ReplicaSampler(state.sessions, clock=clock)
        for tick in range(1, 31):
            write_samples(
                state.sessions,
                [(base + tick * RAW, [Traffic(ident, requests=(1, 0, 0, 0), durations=durations(b5=2))])],
                source="gw",
            )
            sampler.sample(base + tick * RAW)
        clock.now += timedelta(minutes=10)
        span = {"from": at(base), "to": at(base + 300), "step": "5m"}
        raw = metrics_of(client, **span)["series"]
        assert raw["requests_2xx"] == [0.0, 0.1]
        assert raw["replicas_desired"] == [0.0, 2.0]
        assert raw["latency_p50_ms"] == [None, 37.5]
        clock.now += timedelta(days=2)
        assert sampler.maintain().rolled_up == 10 + 2  # minutes, then one 5-minute window, of two sources
        assert metrics_of(client, **span)["series"] == raw


def test_a_sample_written_twice_is_refused_as_written(db: sessionmaker[Session]) -> None:
    """The gateway drops such a sample rather than sending it again (a retry after a commit whose answer was lost)."""
    sample = [(1_800_000_000, [Traffic("e" * 32, requests=(1, 0, 0, 0))])]
    write_samples(db, sample, source="gw/1")
    with pytest.raises(AlreadyWritten, match="duplicate key"):
        write_samples(db, sample, source="gw/1")
    assert write_samples(db, sample, source="gw/2") == 1, "another source's is another row"
