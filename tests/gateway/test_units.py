"""The gateway's pure parts: path parsing, host routing, balancing, activity windows, token counting."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine

from core.db.session import make_sessionmaker
from core.domain.enums import EndpointType
from core.settings import GatewaySettings
from gateway.activity import REFRESH_SECONDS, Activity
from gateway.auth import UNCHECKED, UNKNOWN, TokenCache
from gateway.hold import ColdStarts
from gateway.proxy import Proxy, RequestTarget, parse_target
from gateway.routing import Route, RoutingTable
from gateway.upstream import UpstreamPool
from gateway.usage import UsageReader
from tests.factories import Ticks


def route(namespace: str, name: str, *upstreams: str) -> Route:
    return Route(
        endpoint_id=f"{namespace}-{name}",
        namespace=namespace,
        name=name,
        access=EndpointType.PUBLIC,
        private_service=False,
        paused=False,
        scaled_to_zero=False,
        state="running",
        ready=len(upstreams),
        target=len(upstreams),
        upstreams=upstreams or ("http://u",),
        health_route="/health",
        startup_seconds=None,
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/ns/ep", RequestTarget("ns", "ep", "/", "")),
        ("/ns/ep/", RequestTarget("ns", "ep", "/", "")),
        ("/ns/ep/v1/chat/completions?a=%20b", RequestTarget("ns", "ep", "/v1/chat/completions", "a=%20b")),
        ("/ns/ep/a%2Fb", RequestTarget("ns", "ep", "/a%2Fb", "")),
        ("/metrics", None),
        ("/NS/ep/x", None),
        ("/ns%2Fep/x", None),
    ],
)
def test_paths(raw: str, expected: RequestTarget | None) -> None:
    assert parse_target(raw, None, None) == expected


@pytest.mark.parametrize("raw", ["/ns/ep/../x", "/ns/ep/%2E%2E/x", "/ns/ep/./x", "/ns/ep/a%5Cb", "/ns/ep/%00"])
def test_dot_segments_backslashes_and_nul_are_refused(raw: str) -> None:
    assert isinstance(parse_target(raw, None, None), str)


def _proxy(table: RoutingTable) -> Proxy:
    """A proxy as the gateway builds one; only routing and balancing are used, so nothing is connected."""

    async def build() -> Proxy:
        settings = GatewaySettings()
        pool = UpstreamPool(connect_timeout=1, read_timeout=1, max_head_bytes=1024)
        sessions = make_sessionmaker(create_engine("sqlite://"))
        cold = ColdStarts(table, cap=1, send_wake=lambda endpoint_id: None)
        activity = Activity(clock=lambda: datetime.now(UTC))
        tokens = TokenCache(sessions, ttl_s=1)
        return Proxy(settings, table=table, tokens=tokens, activity=activity, cold=cold, pool=pool, internal=False)

    return asyncio.run(build())


def test_host_routing_tries_every_dash_split() -> None:
    table = RoutingTable()
    table.put(route("my-team", "my-model"))
    target = parse_target("/generate", "my-model-my-team.models.example.com:443", "models.example.com")
    assert isinstance(target, RequestTarget)
    found = _proxy(table).find(target)
    assert found is not None
    assert found.label == "my-team/my-model"
    assert parse_target("/generate", "evil.example.org", "models.example.com") is None  # no path route either


def test_least_outstanding_picks_the_idlest_upstream() -> None:
    table = RoutingTable()
    r = route("ns", "ep", "http://a", "http://b", "http://c")
    proxy = _proxy(table)
    proxy.outstanding = {"http://a": 3, "http://b": 0, "http://c": 1}
    assert proxy.pick(r) == "http://b"
    proxy.outstanding = {"http://a": 1, "http://b": 1, "http://c": 1}
    assert {proxy.pick(r) for _ in range(6)} == {"http://a", "http://b", "http://c"}  # ties rotate


def test_activity_is_a_time_weighted_mean_over_four_periods_and_written_only_on_change() -> None:
    ticks = Ticks(0.0)
    at = datetime(2026, 11, 23, tzinfo=UTC)
    activity = Activity(clock=lambda: at, monotonic=ticks)
    activity.started("e")
    activity.started("e")
    ticks.now = 2.5
    activity.finished("e")
    ticks.now = 5.0
    (row,) = activity.close_period()  # 2 in flight for 2.5 s, then 1 for 2.5 s: mean 1.5
    assert (row.in_flight, row.pending_mean, row.last_request_at) == (1, 1.5, at)
    activity.finished("e")
    ticks.now = 10.0
    (row,) = activity.close_period()
    assert (row.in_flight, row.pending_mean) == (0, 0.75)  # (1.5 + 0) / 2 periods
    for _ in range(3):
        ticks.now += 5
        activity.close_period()
    assert activity.close_period() == []  # idle and already written as zero: nothing to write, and forgotten


def test_a_busy_row_is_written_again_before_the_autoscaler_takes_it_for_a_gone_gateways() -> None:
    ticks = Ticks(0.0)
    activity = Activity(clock=lambda: datetime(2026, 11, 23, tzinfo=UTC), monotonic=ticks)
    activity.started("e")  # a long request: in flight for minutes, its figures settle and stop changing
    written = []
    for _ in range(40):
        ticks.now += 5
        written += [ticks.now for _ in activity.close_period()]
    settled = [t for t in written if t > 65]  # the pending mean and the minute's arrival rate have settled
    assert len(settled) > 2
    assert {b - a for a, b in itertools.pairwise(settled)} == {REFRESH_SECONDS}  # within the 60 s, not every period


def test_tokens_from_openai_json_tgi_details_and_the_last_sse_events() -> None:
    reader = UsageReader("application/json")
    reader.feed(b'{"choices": [], "usage": {"prompt_tokens": 7, ')
    reader.feed(b'"completion_tokens": 3}}')
    assert (reader.tokens().prompt, reader.tokens().completion) == (7, 3)
    tgi = UsageReader("application/json")
    tgi.feed(b'[{"generated_text": "x", "details": {"generated_tokens": 4, "prefill": [{}, {}]}}]')
    assert (tgi.tokens().prompt, tgi.tokens().completion) == (2, 4)
    stream = UsageReader("text/event-stream; charset=utf-8")
    stream.feed(b'data: {"choices": [{"delta": {}}]}\n\n' * 5000)
    stream.feed(b'data: {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 9}}\n\ndata: [DONE]\n\n')
    assert stream.tokens().completion == 9
    assert not UsageReader("image/png").wanted


def test_a_token_that_finds_no_free_database_connection_is_a_503_to_retry(pg_url: str) -> None:
    url = pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    tokens = TokenCache(make_sessionmaker(engine), ttl_s=4)
    try:
        with engine.connect():  # the pool's only connection, busy elsewhere
            assert asyncio.run(tokens.caller("Bearer dais_not_checked_yet")) is UNCHECKED  # 503 + Retry-After
        assert asyncio.run(tokens.caller("Bearer dais_not_checked_yet")) is UNKNOWN  # not remembered: asked again
    finally:
        engine.dispose()
