"""What happened to an endpoint, through HTTP on Postgres: the list's filters and last activity, the replica
list, usage from the replica-count history, and the live feed (real commits, real NOTIFY)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from core.db import feed
from core.db.models import Endpoint, EndpointActivity, EndpointReplica, FeedEvent, ReplicaCount
from tests.conftest import Clock, LiveServer
from tests.factories import ADMIN_TOKEN, endpoint_body, make_user
from tests.fixtures.kube import wait_for
from tests.fixtures.sse import Watcher


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def endpoint_id(sessions: sessionmaker[Session], name: str, namespace: str = "admin") -> str:
    with sessions() as session:
        found = session.query(Endpoint.id).filter_by(namespace=namespace, name=name, deleted_at=None).scalar()
    assert found is not None
    return str(found)


def test_the_list_filters_pages_and_shows_the_last_activity(
    client: TestClient, db: sessionmaker[Session], clock: Clock, alice: str
) -> None:
    for name, tags in (("alpha", ["prod", "llm"]), ("beta", ["prod"]), ("gamma", []), ("delta", ["llm"])):
        assert client.post("/v2/endpoint/admin", json=endpoint_body(name, tags=tags)).status_code == 200
    assert client.post("/v2/endpoint/admin/beta/pause").status_code == 200
    with db() as session, session.begin():
        for gateway, minutes in (("gw-1", 3), ("gw-2", 7)):
            session.add(
                EndpointActivity(
                    endpoint_id=endpoint_id(db, "alpha"),
                    gateway=gateway,
                    last_request_at=clock.now + timedelta(minutes=minutes),
                    in_flight=0,
                    pending_mean=0.0,
                    updated_at=clock.now,
                )
            )

    everything = client.get("/v2/endpoint/admin").json()
    assert [e["name"] for e in everything["items"]] == ["alpha", "beta", "delta", "gamma"]
    assert everything["next"] is None
    shown = {e["name"]: e["status"]["lastActivity"] for e in everything["items"]}
    assert shown == {"alpha": "2026-11-23T12:07:00.123Z", "beta": None, "delta": None, "gamma": None}
    assert client.get("/v2/endpoint/admin/alpha").json()["status"]["lastActivity"] == "2026-11-23T12:07:00.123Z"

    def names(**params: Any) -> list[str]:
        answer = client.get("/v2/endpoint/admin", params=params)
        assert answer.status_code == 200, answer.text
        return [e["name"] for e in answer.json()["items"]]

    assert names(tags="prod") == ["alpha", "beta"]
    assert names(tags="prod,llm") == ["alpha"]
    assert names(state="paused") == ["beta"]
    assert names(state="pending") == ["alpha", "delta", "gamma"]
    assert names(search="ALP") == ["alpha"]
    assert names(search="gpt2") == ["alpha", "beta", "delta", "gamma"]  # the model's id matches too
    assert names(search="nothing-like-it") == []

    first = client.get("/v2/endpoint/admin", params={"limit": 2}).json()
    assert [e["name"] for e in first["items"]] == ["alpha", "beta"]
    second = client.get("/v2/endpoint/admin", params={"limit": 2, "cursor": first["next"]}).json()
    assert [e["name"] for e in second["items"]] == ["delta", "gamma"]
    assert second["next"] is None
    assert names(limit=1, cursor="beta", tags="llm") == ["delta"]

    bad = client.get("/v2/endpoint/admin", params={"state": "sleeping"})
    assert bad.status_code == 400
    assert "state" in bad.text
    assert client.get("/v2/endpoint/admin", params={"search": "a"}, headers=bearer(alice)).status_code == 403


def test_the_replica_list_shows_running_then_gone_replicas(
    client: TestClient, db: sessionmaker[Session], clock: Clock, alice: str
) -> None:
    assert client.post("/v2/endpoint/admin", json=endpoint_body("replicated")).status_code == 200
    ident = endpoint_id(db, "replicated")
    with db() as session, session.begin():
        for replica, started, stopped, why in (
            ("pod-a", 0, None, None),
            ("pod-old", -60, -30, "OOMKilled (exit code 137)"),
            ("pod-older", -90, -60, "Completed (exit code 0)"),
        ):
            session.add(
                EndpointReplica(
                    endpoint_id=ident,
                    id=replica,
                    state="gone" if stopped is not None else "ready",
                    host="node-1",
                    started_at=clock.now + timedelta(minutes=started),
                    stopped_at=clock.now + timedelta(minutes=stopped) if stopped is not None else None,
                    restarts=2,
                    last_termination=why,
                    updated_at=clock.now,
                )
            )
    answer = client.get("/v2/endpoint/admin/replicated/replica")
    assert answer.status_code == 200
    items = answer.json()["items"]
    assert [(r["id"], r["state"]) for r in items] == [("pod-a", "ready"), ("pod-old", "gone"), ("pod-older", "gone")]
    assert (items[0]["stoppedAt"], items[0]["host"], items[0]["restarts"]) == (None, "node-1", 2)
    assert items[1]["lastTermination"] == "OOMKilled (exit code 137)"
    assert client.get("/v2/endpoint/admin/replicated/replica", headers=bearer(alice)).status_code == 403
    assert client.get("/v2/endpoint/admin/nope/replica").status_code == 404


def test_usage_is_the_observed_replica_counts_per_endpoint_hardware_and_day(
    client: TestClient, db: sessionmaker[Session], alice: str
) -> None:
    day = datetime(2026, 11, 20, tzinfo=UTC)

    def count(name: str, at: datetime, replicas: int, hardware: str = "aws-us-east-1-nvidia-l4-x1") -> None:
        with db() as session, session.begin():
            session.add(
                ReplicaCount(
                    endpoint_id=f"id-{name}",
                    namespace="admin",
                    name=name,
                    hardware=hardware,
                    price_per_hour=0.8 if "l4" in hardware else 4.0,
                    replicas=replicas,
                    at=at,
                )
            )

    count("chat", day - timedelta(hours=2), 1)  # in force when the range starts
    count("chat", day + timedelta(hours=22), 3)  # 3 replicas across midnight, for 4 hours
    count("chat", day + timedelta(hours=26), 0, hardware="aws-us-east-1-nvidia-l4-x1")
    count("big", day + timedelta(hours=1), 2, hardware="aws-us-east-1-nvidia-a100-x1")
    count("big", day + timedelta(hours=1, minutes=30), 0, hardware="aws-us-east-1-nvidia-a100-x1")  # deleted

    answer = client.get("/v2/usage/admin", params={"from": "2026-11-20T00:00:00Z", "to": "2026-11-22T00:00:00Z"})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    rows = {(r["endpoint"], r["day"]): r for r in report["items"]}
    assert rows.keys() == {("chat", "2026-11-20"), ("chat", "2026-11-21"), ("big", "2026-11-20")}
    assert rows["chat", "2026-11-20"]["replicaHours"] == pytest.approx(22 * 1 + 2 * 3)
    assert rows["chat", "2026-11-21"]["replicaHours"] == pytest.approx(2 * 3)
    assert rows["chat", "2026-11-21"]["cost"] == pytest.approx(6 * 0.8)
    assert rows["big", "2026-11-20"]["replicaHours"] == pytest.approx(1.0)
    assert rows["big", "2026-11-20"]["cost"] == pytest.approx(4.0)
    assert report["replicaHours"] == pytest.approx(35.0)
    assert report["cost"] == pytest.approx(34 * 0.8 + 4.0)
    totals = {t["key"]: t["replicaHours"] for t in report["endpoints"]}
    assert totals == pytest.approx({"chat": 34.0, "big": 1.0})
    assert [t["key"] for t in report["days"]] == ["2026-11-20", "2026-11-21"]
    assert {t["key"] for t in report["hardware"]} == {"aws-us-east-1-nvidia-l4-x1", "aws-us-east-1-nvidia-a100-x1"}

    narrow = client.get("/v2/usage/admin", params={"from": "2026-11-20T23:00:00Z", "to": "2026-11-21T01:00:00Z"})
    assert narrow.json()["replicaHours"] == pytest.approx(6.0)

    inverted = client.get("/v2/usage/admin", params={"from": "2026-11-22T00:00:00Z", "to": "2026-11-20T00:00:00Z"})
    assert inverted.status_code == 400
    assert "to" in inverted.json()["error"]
    naive = client.get("/v2/usage/admin", params={"from": "2026-11-20T00:00:00"})
    assert naive.status_code == 400
    assert naive.json()["fields"][0]["field"] == "from"
    assert client.get("/v2/usage/admin", headers=bearer(alice)).status_code == 403


# -- the live feed, on a server that commits for real ----------------------------------------------------


def publish(sessions: sessionmaker[Session], namespace: str, name: str, state: str) -> None:
    with sessions() as session, session.begin():
        event = feed.Event(namespace, f"id-{name}", name, "status", {"name": name, "state": state})
        feed.publish(session, [event], now=datetime.now(UTC))


@pytest.fixture
def watched(live_server: LiveServer) -> Iterator[LiveServer]:
    yield live_server
    with live_server.sessions() as session, session.begin():
        session.query(FeedEvent).delete()


def test_the_live_feed_delivers_commits_and_a_reconnect_misses_none(watched: LiveServer) -> None:
    url = f"{watched.url}/v2/endpoint/admin"
    first = Watcher(url)
    assert first.status == 200
    publish(watched.sessions, "admin", "one", "initializing")
    publish(watched.sessions, "elsewhere", "other", "running")  # another namespace's: never shown here
    publish(watched.sessions, "admin", "one", "running")
    wait_for(lambda: len(first.events) >= 2 or None, timeout=10, what="two status events")
    assert [(e["event"], e["name"], e["state"]) for e in first.events] == [
        ("status", "one", "initializing"),
        ("status", "one", "running"),
    ]
    first.close()
    last = first.events[-1]["id"]

    # While nobody watches, more is committed; the reconnect gets exactly that, then what comes next.
    publish(watched.sessions, "admin", "two", "pending")
    publish(watched.sessions, "admin", "one", "paused")
    again = Watcher(url, last_event_id=last)
    wait_for(lambda: len(again.events) >= 2 or None, timeout=10, what="the missed events")
    publish(watched.sessions, "admin", "two", "running")
    wait_for(lambda: len(again.events) >= 3 or None, timeout=10, what="the next event")
    assert [(e["name"], e["state"]) for e in again.events] == [
        ("two", "pending"),
        ("one", "paused"),
        ("two", "running"),
    ]
    assert [e["id"] for e in again.events] == sorted(e["id"] for e in again.events)
    again.close()

    # An id older than the feed keeps: the watcher is told to list again.
    with watched.sessions() as session, session.begin():
        feed.prune(session, now=datetime.now(UTC) + feed.RETENTION + timedelta(seconds=1))
    publish(watched.sessions, "admin", "three", "pending")
    late = Watcher(url, last_event_id=1)
    wait_for(lambda: late.events or None, timeout=10, what="the reset event")
    assert late.events[0]["event"] == "reset"
    late.close()


def test_the_live_feed_is_for_members_only(watched: LiveServer) -> None:
    with watched.sessions() as session, session.begin():
        token = make_user(session, f"u{uuid.uuid4().hex[:8]}", now=datetime.now(UTC))
    answer = httpx.get(f"{watched.url}/v2/endpoint/admin", params={"watch": "true"}, headers=bearer(token))
    assert answer.status_code == 403
    bad = httpx.get(
        f"{watched.url}/v2/endpoint/admin",
        params={"watch": "true"},
        headers={**bearer(ADMIN_TOKEN), "Last-Event-ID": "yesterday"},
    )
    assert bad.status_code == 400
    assert "Last-Event-ID" in bad.json()["error"]
