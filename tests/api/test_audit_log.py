"""The namespace-wide audit log (`GET /v2/audit-logs/{namespace}`): members only, filters, a cursor."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from tests.conftest import Clock
from tests.factories import endpoint_body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_who_changed_what_in_a_namespace(client: TestClient, clock: Clock, alice: str) -> None:
    assert client.post("/v2/endpoint/admin", json=endpoint_body("one")).status_code == 200
    clock.now += timedelta(minutes=1)
    assert client.post("/v2/endpoint/admin", json=endpoint_body("two")).status_code == 200
    assert client.post("/v2/endpoint/admin/one/pause").status_code == 200
    clock.now += timedelta(minutes=1)
    assert client.delete("/v2/endpoint/admin/two").status_code == 200

    log = client.get("/v2/audit-logs/admin").json()
    assert [(e["action"], e["endpoint"]) for e in log["items"]] == [
        ("endpoint.delete", "two"),  # soft-deleted: still named until the controller finalizes it
        ("endpoint.pause", "one"),
        ("endpoint.create", "two"),
        ("endpoint.create", "one"),
    ]
    assert {e["actor"] for e in log["items"]} == {"admin"}
    assert log["next"] is None

    paused = client.get("/v2/audit-logs/admin", params={"action": "endpoint.pause"}).json()["items"]
    assert [e["endpoint"] for e in paused] == ["one"]
    assert paused[0]["diff"] == [{"path": "paused", "old": False, "new": True}]
    of_one = client.get("/v2/audit-logs/admin", params={"endpoint": "one"}).json()["items"]
    assert [e["action"] for e in of_one] == ["endpoint.pause", "endpoint.create"]
    recent = client.get("/v2/audit-logs/admin", params={"since": "2026-11-23T12:01:00Z"}).json()["items"]
    assert [e["action"] for e in recent] == ["endpoint.delete", "endpoint.pause", "endpoint.create"]
    early = client.get("/v2/audit-logs/admin", params={"until": "2026-11-23T12:01:00Z"}).json()["items"]
    assert [e["endpoint"] for e in early] == ["one"]
    assert client.get("/v2/audit-logs/admin", params={"actor": "alice"}).json()["items"] == []

    first = client.get("/v2/audit-logs/admin", params={"limit": 3}).json()
    assert len(first["items"]) == 3
    rest = client.get("/v2/audit-logs/admin", params={"limit": 3, "before": first["next"]}).json()
    assert [e["action"] for e in rest["items"]] == ["endpoint.create"]
    assert rest["next"] is None

    assert client.get("/v2/audit-logs/admin", headers=bearer(alice)).status_code == 403
    unknown = client.get("/v2/audit-logs/admin", params={"endpoint": "nope"})
    assert unknown.status_code == 404
    naive = client.get("/v2/audit-logs/admin", params={"since": "2026-11-23T12:00:00"})
    assert naive.status_code == 400
    assert naive.json()["fields"][0]["field"] == "since"
