"""Authentication and authorization: 401 for missing or bad tokens, 403 for foreign namespaces."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import Clock
from tests.factories import endpoint_body, make_org, make_user


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("headers", "hint"),
    [
        ({"Authorization": ""}, "missing token"),
        ({"Authorization": "Basic abc"}, "malformed"),
        ({"Authorization": "Bearer nope"}, "invalid token"),
    ],
)
def test_missing_or_bad_token_is_401(client: TestClient, headers: dict[str, str], hint: str) -> None:
    for path in ("/v2/endpoint/admin", "/api/whoami-v2", "/v2/provider/admin"):
        response = client.get(path, headers=headers)
        assert response.status_code == 401
        assert hint in response.json()["error"]


@pytest.mark.parametrize(("authorization", "hint"), [("", "missing token"), ("Basic abc", "malformed")])
def test_a_caller_without_a_bearer_token_learns_that_before_anything_about_its_body(
    client: TestClient, authorization: str, hint: str
) -> None:
    invalid = {"name": "Not A Valid Name!", "model": {"repository": 5}}
    assert client.post("/v2/endpoint/admin", json=invalid).status_code == 400  # with the admin token: the body
    response = client.post("/v2/endpoint/admin", json=invalid, headers={"Authorization": authorization})
    assert response.status_code == 401, response.text
    assert hint in response.json()["error"]


def test_user_reaches_own_namespace_only(client: TestClient, alice: str) -> None:
    assert client.post("/v2/endpoint/alice", json=endpoint_body(), headers=bearer(alice)).status_code == 200
    for ns in ("admin", "no-such-namespace"):
        response = client.get(f"/v2/endpoint/{ns}", headers=bearer(alice))
        assert response.status_code == 403, "foreign namespaces answer 403 whether or not they exist"
        assert "not a member" in response.json()["error"]
    assert client.post("/v2/endpoint/admin", json=endpoint_body(), headers=bearer(alice)).status_code == 403
    # admins reach every namespace
    assert [e["name"] for e in client.get("/v2/endpoint/alice").json()["items"]] == ["my-ep"]


def test_logs_answer_members_only_and_say_where_lines_are_kept(client: TestClient, alice: str) -> None:
    assert client.post("/v2/endpoint/alice", json=endpoint_body(), headers=bearer(alice)).status_code == 200
    client.post("/v2/endpoint/admin", json=endpoint_body())
    refused = client.get("/v2/endpoint/admin/my-ep/logs", headers=bearer(alice))
    assert refused.status_code == 403
    own = client.get("/v2/endpoint/alice/my-ep/logs", headers=bearer(alice))
    assert own.status_code == 200
    assert own.json()["lines"] == []
    assert own.json()["source"].startswith("none: ")  # no local runtime here: it says so rather than nothing
    assert client.get("/v2/endpoint/alice/nope/logs", headers=bearer(alice)).status_code == 404


def test_org_members_reach_the_org(client: TestClient, db: sessionmaker[Session], alice: str, clock: Clock) -> None:
    with db() as session, session.begin():
        bob = make_user(session, "bob", now=clock())
        make_org(session, "acme", members=["alice"], now=clock())
    assert client.post("/v2/endpoint/acme", json=endpoint_body(), headers=bearer(alice)).status_code == 200
    assert client.get("/v2/endpoint/acme/my-ep", headers=bearer(alice)).status_code == 200
    assert client.get("/v2/endpoint/acme/my-ep", headers=bearer(bob)).status_code == 403
    whoami = client.get("/api/whoami-v2", headers=bearer(alice)).json()
    assert whoami["type"] == "user"
    assert whoami["name"] == "alice"
    assert whoami["orgs"] == [{"type": "org", "name": "acme"}]


def test_admin_create_in_unknown_namespace_is_404(client: TestClient) -> None:
    response = client.post("/v2/endpoint/ghost", json=endpoint_body())
    assert response.status_code == 404
    assert "create the user or org first" in response.json()["error"]


def test_revoked_token_is_401_at_once(client: TestClient, alice: str) -> None:
    tokens = client.get("/api/tokens", headers=bearer(alice)).json()["items"]
    assert client.delete(f"/api/tokens/{tokens[0]['id']}", headers=bearer(alice)).status_code == 200
    response = client.get("/v2/endpoint/alice", headers=bearer(alice))
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]


def test_expired_token_is_401(client: TestClient, alice: str, clock: Clock) -> None:
    created = client.post("/api/tokens", json={"name": "short", "expiresInDays": 1}, headers=bearer(alice)).json()
    assert client.get("/v2/endpoint/alice", headers=bearer(created["token"])).status_code == 200
    clock.now += timedelta(days=1)
    response = client.get("/v2/endpoint/alice", headers=bearer(created["token"]))
    assert response.status_code == 401
    assert "expired" in response.json()["error"]


def test_endpoint_scoped_token_is_data_plane_only(client: TestClient, alice: str) -> None:
    client.post("/v2/endpoint/alice", json=endpoint_body(), headers=bearer(alice))
    created = client.post("/api/tokens", json={"name": "gw", "endpoint": "alice/my-ep"}, headers=bearer(alice)).json()
    response = client.get("/v2/endpoint/alice/my-ep", headers=bearer(created["token"]))
    assert response.status_code == 403
    assert "data plane" in response.json()["error"]
    assert created["endpoint"] == "alice/my-ep"


def test_scoped_token_needs_an_existing_reachable_endpoint(client: TestClient, alice: str) -> None:
    missing = client.post("/api/tokens", json={"name": "gw", "endpoint": "alice/none"}, headers=bearer(alice))
    assert missing.status_code == 404
    foreign = client.post("/api/tokens", json={"name": "gw", "endpoint": "admin/x"}, headers=bearer(alice))
    assert foreign.status_code == 403


def test_only_admins_create_users_and_orgs(client: TestClient, alice: str) -> None:
    assert client.post("/api/users", json={"name": "carol"}, headers=bearer(alice)).status_code == 403
    assert client.post("/api/orgs", json={"name": "corp"}, headers=bearer(alice)).status_code == 403
    assert client.post("/api/tokens", json={"name": "x", "user": "admin"}, headers=bearer(alice)).status_code == 403


def test_users_orgs_and_tokens(client: TestClient) -> None:
    assert client.post("/api/users", json={"name": "carol"}).json()["type"] == "user"
    taken = client.post("/api/orgs", json={"name": "carol"})
    assert taken.status_code == 409, "users and orgs share one namespace"
    unknown = client.post("/api/orgs", json={"name": "corp", "members": ["carol", "zed"]})
    assert unknown.status_code == 400
    assert "zed" in unknown.json()["error"]
    assert client.post("/api/orgs", json={"name": "corp", "members": ["carol"]}).json()["members"] == ["carol"]
    created = client.post("/api/tokens", json={"user": "carol", "name": "laptop"}).json()
    assert created["token"].startswith("dais_")
    listed = client.get("/api/tokens", params={"user": "carol"}).json()["items"]
    assert [t["name"] for t in listed] == ["laptop"]
    assert "token" not in listed[0], "a token is shown only once"
    assert client.get("/v2/endpoint/corp", headers=bearer(created["token"])).json()["items"] == []
    bad = client.post("/api/users", json={"name": "bad name"})
    assert bad.status_code == 400
    assert "name" in bad.json()["error"]


def test_users_cannot_revoke_others_tokens(
    client: TestClient, db: sessionmaker[Session], alice: str, clock: Clock
) -> None:
    with db() as session, session.begin():
        make_user(session, "bob", now=clock())
    bob_tokens = client.get("/api/tokens", params={"user": "bob"}).json()["items"]
    assert client.delete(f"/api/tokens/{bob_tokens[0]['id']}", headers=bearer(alice)).status_code == 404
