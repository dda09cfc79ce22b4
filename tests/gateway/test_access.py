"""Who gets through: every access level with right, wrong, missing, scoped and revoked tokens, and private
services only on the internal listener."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from core.domain.enums import EndpointType
from gateway.auth import Caller, Denial, TokenCache, decide
from gateway.routing import Route
from tests.factories import Ticks
from tests.fixtures.engine import FakeEngine
from tests.fixtures.kube import wait_for
from tests.gateway.conftest import Running


@dataclass
class World:
    alice: str  # member of acme
    bob: str  # not a member
    scoped: str  # alice's token scoped to acme/priv
    gateway: Running


def _token(gateway: Running, user: str, **extra: str) -> tuple[str, str]:
    answer = gateway.api.post("/api/tokens", json={"user": user, "name": f"t-{user}", **extra})
    assert answer.status_code == 200, answer.text
    return answer.json()["id"], answer.json()["token"]


@pytest.fixture(scope="module")
def world(gateway: Running, engine: FakeEngine) -> World:
    api = gateway.api
    for user in ("alice", "bob"):
        assert api.post("/api/users", json={"name": user}).status_code == 200
    assert api.post("/api/orgs", json={"name": "acme", "members": ["alice"]}).status_code == 200
    for name, kind in (("pub", "public"), ("auth", "authenticated"), ("priv", "private"), ("prot", "protected")):
        gateway.set_status(gateway.create(name, namespace="acme", type=kind), engines=[engine])
    hidden = gateway.create("hidden", namespace="acme", type="public", privateService={"accountId": "1"})
    gateway.set_status(hidden, engines=[engine])
    for name in ("pub", "auth", "priv", "prot", "hidden"):
        gateway.serving("acme", name)
    _, alice = _token(gateway, "alice")
    _, bob = _token(gateway, "bob")
    _, scoped = _token(gateway, "alice", endpoint="acme/priv")
    return World(alice, bob, scoped, gateway)


def status(world: World, name: str, token: str | None, *, internal: bool = False) -> int:
    base = world.gateway.internal_url if internal else world.gateway.url
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    answer = httpx.get(f"{base}/acme/{name}/health", headers=headers)
    if answer.status_code in (401, 403, 404):
        assert answer.json()["statusCode"] == answer.status_code  # the API's error shape
    return answer.status_code


@pytest.mark.parametrize(
    ("endpoint", "who", "expected"),
    [
        ("pub", None, 200),
        ("pub", "garbage", 200),  # a public endpoint ignores a bad token
        ("pub", "bob", 200),
        ("pub", "scoped", 200),  # tokens do not matter on a public endpoint
        ("auth", None, 401),
        ("auth", "garbage", 401),
        ("auth", "bob", 200),
        ("auth", "alice", 200),
        ("priv", None, 401),
        ("priv", "garbage", 401),
        ("priv", "bob", 403),
        ("priv", "alice", 200),
        ("priv", "admin", 200),
        ("priv", "scoped", 200),
        ("prot", "bob", 403),
        ("prot", "alice", 200),
        ("prot", "scoped", 403),  # scoped to another endpoint
        ("auth", "scoped", 403),
        ("hidden", None, 404),  # privateService: not on the public listener at all
    ],
)
def test_access_levels(world: World, endpoint: str, who: str | None, expected: int) -> None:
    tokens = {
        None: None,
        "garbage": "dais_not_a_real_token",
        "alice": world.alice,
        "bob": world.bob,
        "scoped": world.scoped,
        "admin": "dais_test_admin_token_0123456789abcdef",
    }
    assert status(world, endpoint, tokens[who]) == expected


def test_a_private_service_is_served_on_the_internal_listener(world: World) -> None:
    assert status(world, "hidden", None, internal=True) == 200


def test_a_malformed_authorization_header_is_a_401(world: World) -> None:
    answer = httpx.get(f"{world.gateway.url}/acme/priv/health", headers={"Authorization": "Basic abc"})
    assert answer.status_code == 401
    assert "Bearer" in answer.json()["error"]


def test_a_revoked_token_stops_working_within_the_cache_time(world: World) -> None:
    token_id, token = _token(world.gateway, "alice")
    assert status(world, "priv", token) == 200  # now cached
    assert world.gateway.api.delete(f"/api/tokens/{token_id}").status_code in (200, 204)
    wait_for(lambda: status(world, "priv", token) == 401, timeout=10, what="the revoked token to be refused")


def test_the_token_cache_forgets_a_token_before_5_seconds(world: World) -> None:
    clock = Ticks()
    cache = TokenCache(world.gateway.live.sessions, ttl_s=4, monotonic=clock)
    token_id, token = _token(world.gateway, "alice")

    async def caller() -> Caller | Denial | None:
        return await cache.caller(f"Bearer {token}")

    assert isinstance(asyncio.run(caller()), Caller)
    assert world.gateway.api.delete(f"/api/tokens/{token_id}").status_code in (200, 204)
    clock.now += 3.9
    assert isinstance(asyncio.run(caller()), Caller)  # still remembered
    clock.now += 0.2
    refused = asyncio.run(caller())
    assert isinstance(refused, Denial)
    assert refused.status == 401


def _route(access: EndpointType) -> Route:
    return Route(
        endpoint_id="e1",
        namespace="acme",
        name="x",
        access=access,
        private_service=False,
        paused=False,
        scaled_to_zero=False,
        state="running",
        ready=1,
        target=1,
        upstreams=("http://u",),
        health_route="/health",
        startup_seconds=None,
    )


def test_an_expired_token_is_refused_even_while_cached() -> None:
    now = datetime(2026, 11, 23, tzinfo=UTC)
    caller = Caller("alice", False, frozenset({"alice", "acme"}), None, expires_at=now - timedelta(seconds=1))
    denial = decide(_route(EndpointType.AUTHENTICATED), caller, now)
    assert denial is not None
    assert denial.status == 401
    assert "expired" in denial.message
