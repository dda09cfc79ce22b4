"""Orgs and their members through HTTP (the console's Account screen): who may see and change them, the audit
trail, and a removed member losing the org's namespace at once. Also the token list naming each scoped token's
endpoint, and the recommendation's suggestions for the create form."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from api.identity.schemas import OrgList, OrgRead, TokenList
from api.recommendation.schemas import Recommendation
from tests.conftest import Clock
from tests.factories import endpoint_body, make_org, make_user
from tests.fixtures.hub import HubServer, gguf_bytes, safetensors_bytes


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def conforms(response: Any, model: type[BaseModel]) -> Any:
    assert response.status_code == 200, response.text
    model.model_validate_json(response.content, strict=True)
    return response.json()


def test_members_and_admins_see_an_org_and_no_one_else(
    client: TestClient, db: sessionmaker[Session], alice: str, clock: Clock
) -> None:
    with db() as session, session.begin():
        bob = make_user(session, "bob", now=clock())
        make_org(session, "acme", members=["alice"], now=clock())
        make_org(session, "other", members=["bob"], now=clock())
    seen = conforms(client.get("/api/orgs/acme", headers=bearer(alice)), OrgRead)
    assert seen == {"id": seen["id"], "name": "acme", "type": "org", "members": ["alice"]}
    assert conforms(client.get("/api/orgs/acme"), OrgRead)["members"] == ["alice"]  # the admin
    refused = client.get("/api/orgs/acme", headers=bearer(bob))
    assert refused.status_code == 403
    assert "not a member" in refused.json()["error"]
    assert client.get("/api/orgs/ghost", headers=bearer(bob)).status_code == 403, "existence does not leak"
    assert client.get("/api/orgs/ghost").status_code == 404
    assert client.get("/api/orgs/alice", headers=bearer(alice)).status_code == 404, "a user is not an org"
    # The list: one's own orgs; an admin's, every org.
    assert [o["name"] for o in conforms(client.get("/api/orgs", headers=bearer(alice)), OrgList)["items"]] == ["acme"]
    assert [o["name"] for o in conforms(client.get("/api/orgs", headers=bearer(bob)), OrgList)["items"]] == ["other"]
    assert [o["name"] for o in client.get("/api/orgs").json()["items"]] == ["acme", "other"]


def test_a_member_adds_and_removes_members_and_the_audit_log_says_who(
    client: TestClient, db: sessionmaker[Session], alice: str, clock: Clock
) -> None:
    with db() as session, session.begin():
        bob = make_user(session, "bob", now=clock())
        carol = make_user(session, "carol", now=clock())
        make_org(session, "acme", members=["alice"], now=clock())
    assert client.get("/v2/endpoint/acme", headers=bearer(bob)).status_code == 403  # cached: bob is no member
    added = conforms(client.put("/api/orgs/acme/members/bob", headers=bearer(alice)), OrgRead)
    assert added["members"] == ["alice", "bob"]
    assert client.get("/v2/endpoint/acme", headers=bearer(bob)).status_code == 200, "bob reaches acme at once"
    again = client.put("/api/orgs/acme/members/bob", headers=bearer(alice))
    assert again.status_code == 200
    assert again.json()["members"] == ["alice", "bob"]
    # bob, now a member, manages it too; carol, not a member, may not.
    assert client.put("/api/orgs/acme/members/carol", headers=bearer(carol)).status_code == 403
    assert client.delete("/api/orgs/acme/members/alice", headers=bearer(carol)).status_code == 403
    by_bob = client.put("/api/orgs/acme/members/carol", headers=bearer(bob))
    assert by_bob.json()["members"] == ["alice", "bob", "carol"]
    removed = conforms(client.delete("/api/orgs/acme/members/bob", headers=bearer(alice)), OrgRead)
    assert removed["members"] == ["alice", "carol"]
    refused = client.get("/v2/endpoint/acme", headers=bearer(bob))
    assert refused.status_code == 403, "a removed member loses the namespace at once"
    gone = client.delete("/api/orgs/acme/members/bob", headers=bearer(alice))
    assert gone.status_code == 404
    assert "not a member" in gone.json()["error"]
    unknown = client.put("/api/orgs/acme/members/zed", headers=bearer(alice))
    assert unknown.status_code == 404
    assert "POST /api/users" in unknown.json()["error"]
    assert client.put("/api/orgs/acme/members/acme", headers=bearer(alice)).status_code == 404, "an org is no user"
    assert client.put("/api/orgs/ghost/members/bob").status_code == 404
    events = client.get("/v2/audit-logs/acme").json()["items"]
    changes = [(e["action"], e["actor"], e["diff"]) for e in events if e["action"].startswith("org.member")]
    assert ("org.member.add", "alice", [{"path": "members", "old": None, "new": "bob"}]) in changes
    assert ("org.member.remove", "alice", [{"path": "members", "old": "bob", "new": None}]) in changes
    assert len(changes) == 3, "adding a member twice records nothing the second time"


def test_a_scoped_token_is_listed_with_its_endpoint(client: TestClient, alice: str) -> None:
    assert client.post("/v2/endpoint/alice", json=endpoint_body(), headers=bearer(alice)).status_code == 200
    created = client.post(
        "/api/tokens", json={"name": "gw", "endpoint": "alice/my-ep", "expiresInDays": 7}, headers=bearer(alice)
    )
    assert created.status_code == 200, created.text
    listed = conforms(client.get("/api/tokens", headers=bearer(alice)), TokenList)["items"]
    scoped = next(t for t in listed if t["name"] == "gw")
    assert scoped["endpoint"] == "alice/my-ep"
    assert scoped["expiresAt"] is not None
    assert "token" not in scoped
    assert next(t for t in listed if t["name"] == "test")["endpoint"] is None


def test_the_recommendation_suggests_an_engine_and_says_whether_the_model_is_gated(
    client: TestClient, hub: HubServer
) -> None:
    hub.add_model(
        "org/chat-gguf",
        {"m-q4_k_m.gguf": gguf_bytes({"token_embd.weight": [64, 32]})},
        pipeline_tag="text-generation",
        library_name="gguf",
    )
    small = {"config.json": b"{}", "model.safetensors": safetensors_bytes({"w": ("F32", [64, 64])})}
    hub.add_model("org/embed", small, pipeline_tag="feature-extraction", library_name="sentence-transformers")
    hub.add_model("org/gated", small, pipeline_tag="text-generation", gated=True, tokens={"hf_good_token"})
    gguf = conforms(client.get("/v2/recommendation", params={"repository": "org/chat-gguf"}), Recommendation)
    assert (gguf["engine"], gguf["library"], gguf["gated"], gguf["task"]) == (
        "llamacpp",
        "gguf",
        False,
        "text-generation",
    )
    assert gguf["ggufFile"] == "m-q4_k_m.gguf"
    embed = conforms(client.get("/v2/recommendation", params={"repository": "org/embed"}), Recommendation)
    assert embed["engine"] == "tei"  # what the huggingface variant runs for the task (engine catalog)
    assert embed["library"] == "sentence-transformers"
    assert client.put("/api/namespaces/admin/hub-token", json={"token": "hf_good_token"}).status_code == 200
    gated = client.get("/v2/recommendation", params={"repository": "org/gated", "namespace": "admin"})
    assert conforms(gated, Recommendation)["gated"] is True
