"""The gateway as clients see it: routing, transparency, streaming, real clients, errors."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
from huggingface_hub import InferenceClient
from openai import OpenAI

from core.db.models import EndpointActivity
from tests.conftest import LiveServer
from tests.fixtures.engine import FakeEngine
from tests.fixtures.engine import words_for as words
from tests.fixtures.kube import wait_for
from tests.gateway.conftest import Running, start_gateway
from tests.gateway.scripted import ScriptedUpstream


@pytest.fixture(scope="module")
def routed(gateway: Running, engine: FakeEngine) -> str:
    """A public endpoint admin/chat served by the fake engine; returns its gateway URL."""
    return gateway.serve("chat", engine)


def test_path_query_and_body_reach_the_engine_unchanged(routed: str) -> None:
    answer = httpx.post(f"{routed}/echo/a%2Fb/c?x=1&y=%20z&x=2", content=b"x" * 5000)
    assert answer.status_code == 200
    seen = answer.json()
    assert seen["method"] == "POST"
    assert seen["path"] == "/echo/a%2Fb/c"
    assert seen["query"] == "x=1&y=%20z&x=2"
    assert seen["body_bytes"] == 5000


def test_hop_by_hop_headers_and_the_callers_token_stay_at_the_gateway(routed: str) -> None:
    answer = httpx.get(
        f"{routed}/echo/",
        headers={
            "Authorization": "Bearer secret-of-the-caller",
            "Connection": "keep-alive, X-Drop-Me",
            "X-Drop-Me": "1",
            "Proxy-Authorization": "Basic x",
            "X-Keep-Me": "kept",
            "X-Request-Id": "req-123",
        },
    )
    headers = answer.json()["headers"]
    assert "authorization" not in headers
    assert "x-drop-me" not in headers
    assert "proxy-authorization" not in headers
    assert headers["x-keep-me"] == "kept"
    assert headers["x-request-id"] == "req-123"
    assert headers["x-forwarded-for"] == "127.0.0.1"


def test_a_chunked_request_body_streams_through(routed: str) -> None:
    def chunks():  # no Content-Length: sent chunked
        for _ in range(50):
            yield b"y" * 10_000

    answer = httpx.post(f"{routed}/echo/upload", content=chunks())
    assert answer.json()["body_bytes"] == 500_000


def test_the_bare_url_answers_as_the_health_route(routed: str, engine: FakeEngine) -> None:
    assert httpx.get(routed).status_code == 200
    assert httpx.get(routed + "/").json() == {"ready": True}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/admin/chat/../other/x", 400),
        ("/admin/chat/%2e%2e/x", 400),
        ("/admin%2Fchat/x", 404),
        ("/admin/ch%61t/x", 404),
        ("/admin/nope/x", 404),
        ("/only-one-segment", 404),
    ],
)
def test_crafted_paths_do_not_steer_routing(gateway: Running, routed: str, path: str, status: int) -> None:
    # httpx would normalise the dots away; a raw socket sends the path exactly as written.
    port = gateway.gateway.ports["public"]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        raw = b""
        while chunk := conn.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == str(status).encode()
    assert orjson.loads(body)["statusCode"] == status


def test_a_host_header_does_not_choose_the_endpoint_without_a_domain(gateway: Running, routed: str) -> None:
    answer = httpx.get(f"{gateway.url}/admin/chat/echo/", headers={"Host": "chat-admin.example.com"})
    assert answer.status_code == 200
    assert httpx.get(f"{gateway.url}/echo/", headers={"Host": "chat-admin.example.com"}).status_code == 404


def test_huggingface_inference_client_generates_and_streams(routed: str) -> None:
    client = InferenceClient(model=routed, provider="hf-inference")
    assert client.text_generation("hello there", max_new_tokens=3) == " ".join(words("hello there", 3))
    streamed = list(client.text_generation("hello there", max_new_tokens=4, stream=True))
    assert "".join(streamed).split() == words("hello there", 4)
    reply = client.chat_completion(messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert reply.choices[0].message.content == " ".join(words("hi", 2))
    chunks = list(client.chat_completion(messages=[{"role": "user", "content": "hi"}], max_tokens=3, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).split() == words("hi", 3)


def test_openai_sdk_through_the_gateway(routed: str) -> None:
    client = OpenAI(base_url=routed + "/v1", api_key="unused-on-a-public-endpoint")
    reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "a b c"}], max_tokens=2)
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 3
    stream = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "a b c"}],
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


def test_tei_embed(routed: str) -> None:
    assert httpx.post(f"{routed}/embed", json={"inputs": ["ab", "abc"]}).json() == [
        [2.0, 0.5, -0.25],
        [3.0, 0.5, -0.25],
    ]


def test_events_arrive_one_by_one_not_buffered(routed: str) -> None:
    gap_ms, count = 150, 6
    arrivals = []
    with httpx.stream(
        "POST",
        f"{routed}/generate_stream",
        json={"inputs": "x", "parameters": {"max_new_tokens": count}},
        headers={"X-Fake-Token-Delay-Ms": str(gap_ms)},
    ) as answer:
        for line in answer.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.monotonic())
    assert len(arrivals) == count
    # Buffered, all events would land together at the end; unbuffered, they keep the engine's spacing.
    spread = arrivals[-1] - arrivals[0]
    assert spread >= (count - 1) * gap_ms / 1000 * 0.8


def test_token_counts_and_request_metrics_are_exported(gateway: Running, routed: str) -> None:
    def figure(name: str) -> float:
        return gateway.figure(name, "admin/chat")

    before = figure("llm_completion_tokens_total"), figure("llm_prompt_tokens_total")
    httpx.post(
        f"{routed}/v1/chat/completions", json={"messages": [{"role": "user", "content": "one two"}], "max_tokens": 4}
    )
    httpx.post(
        f"{routed}/generate",
        json={"inputs": "x y z", "parameters": {"max_new_tokens": 3, "details": True, "decoder_input_details": True}},
    )
    with httpx.stream(
        "POST", f"{routed}/generate_stream", json={"inputs": "q", "parameters": {"max_new_tokens": 5}}
    ) as s:
        s.read()
    after = figure("llm_completion_tokens_total"), figure("llm_prompt_tokens_total")
    assert after[0] - before[0] == 4 + 3 + 5
    assert after[1] - before[1] == 2 + 3
    assert figure("llm_requests_total") > 0
    assert (
        'llm_internal_request_duration_ms_bucket{endpoint="admin/chat"'
        in httpx.get(f"{gateway.internal_url}/metrics").text
    )
    assert httpx.get(f"{gateway.url}/metrics").status_code == 404  # metrics stay on the internal listener


def test_a_refused_upstream_is_a_503_to_retry_with_a_reason(gateway: Running) -> None:
    ident = gateway.create("gone-engine")
    dead = FakeEngine()
    dead.close()
    gateway.set_status(ident, engines=[dead])
    gateway.serving("admin", "gone-engine")
    answer = httpx.post(f"{gateway.url}/admin/gone-engine/generate", json={"inputs": "x"})
    assert answer.status_code == 503  # nothing reached a replica: safe to send again
    assert answer.headers["retry-after"] == "1"
    assert "refused" in answer.json()["error"]


def test_a_kept_alive_connection_closed_as_it_is_picked_is_retried_on_a_new_one(
    gateway: Running, engine: FakeEngine
) -> None:
    with ScriptedUpstream() as upstream:
        ident = gateway.create("reused")
        gateway.set_status(ident, engines=[engine], addresses=[upstream.address], upstream=upstream.url)
        gateway.serving("admin", "reused")
        with httpx.Client() as client:
            answers = [client.get(f"{gateway.url}/admin/reused/drop-reused") for _ in range(3)]
        # Each after the first finds the kept-alive connection, which the replica closes unanswered: a GET is
        # safe to repeat, so the gateway sends it again on a new connection, and the client never sees it.
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert upstream.connections >= 3
        refused = httpx.post(f"{gateway.url}/admin/reused/drop-reused", json={"inputs": "x"})
        assert refused.status_code == 503  # a POST is not repeated: it may have been acted on
        assert refused.headers["retry-after"] == "1"


def test_a_replica_that_drops_the_request_is_a_503_and_one_that_answers_garbage_a_502(
    gateway: Running, engine: FakeEngine
) -> None:
    with ScriptedUpstream() as upstream:
        ident = gateway.create("flaky")
        gateway.set_status(ident, engines=[engine], addresses=[upstream.address], upstream=upstream.url)
        gateway.serving("admin", "flaky")
        dropped = httpx.post(f"{gateway.url}/admin/flaky/drop", json={"inputs": "x"})
        assert dropped.status_code == 503
        assert dropped.headers["retry-after"] == "1"
        assert "dropped the connection before answering" in dropped.json()["error"]
        garbage = httpx.post(f"{gateway.url}/admin/flaky/garbage", json={"inputs": "x"})
        assert garbage.status_code == 502
        assert "retry-after" not in garbage.headers
        assert "HTTP" in garbage.json()["error"]


def test_an_oversized_body_is_refused(live_server: LiveServer, routed: str) -> None:
    small, thread = start_gateway(live_server, max_body_bytes=1000)
    try:
        url = f"http://127.0.0.1:{small.ports['public']}/admin/chat"
        wait_for(lambda: True if small.table.get("admin", "chat") else None, timeout=10, what="route")
        assert httpx.post(f"{url}/echo/", content=b"x" * 2000).status_code == 413

        def chunks() -> Iterator[bytes]:
            for _ in range(3):
                yield b"z" * 600

        assert httpx.post(f"{url}/echo/", content=chunks()).status_code == 413
        assert httpx.post(f"{url}/echo/", content=b"x" * 900).status_code == 200
    finally:
        small.stop()
        thread.join(timeout=15)


def test_a_client_that_goes_away_cancels_the_upstream_call(routed: str, engine: FakeEngine) -> None:
    before = engine.control()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{routed}/slow", headers={"X-Fake-Delay-Ms": "3000"}, timeout=0.5)
    wait_for(
        lambda: True if engine.control()["cancelled"] > before["cancelled"] else None,
        timeout=5,
        what="the engine to see its request cancelled",
    )
    assert engine.control()["completed_slow"] == before["completed_slow"]


def test_a_silent_upstream_is_a_504_and_a_domain_routes_by_host(live_server: LiveServer, routed: str) -> None:
    other, thread = start_gateway(live_server, read_timeout_seconds=0.5, domain="models.example.com")
    try:
        wait_for(lambda: True if other.table.get("admin", "chat") else None, timeout=10, what="route")
        base = f"http://127.0.0.1:{other.ports['public']}"
        slow = httpx.get(f"{base}/admin/chat/slow", headers={"X-Fake-Delay-Ms": "3000"})
        assert slow.status_code == 504
        assert "did not answer in time" in slow.json()["error"]
        by_host = httpx.get(f"{base}/echo/x?q=1", headers={"Host": "chat-admin.models.example.com"})
        assert by_host.status_code == 200
        assert by_host.json()["path"] == "/echo/x"
        assert by_host.json()["query"] == "q=1"
    finally:
        other.stop()
        thread.join(timeout=15)


def test_an_engine_that_dies_mid_stream_leaves_the_answer_visibly_cut(routed: str) -> None:
    with httpx.stream("GET", f"{routed}/drop") as answer:
        assert answer.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in answer.iter_raw():
                pass


def test_the_gateway_counts_arrivals_and_completions_but_not_requests_a_replica_sheds(
    live_server: LiveServer, routed: str
) -> None:
    counting, thread = start_gateway(live_server, activity_seconds=1)  # a 12-s rate window
    try:
        route = wait_for(lambda: counting.table.get("admin", "chat"), timeout=10, what="route")
        base = f"http://127.0.0.1:{counting.ports['public']}/admin/chat"
        with httpx.Client() as client:
            assert [client.get(f"{base}/echo/").status_code for _ in range(6)] == [200] * 6
            assert [client.get(f"{base}/busy").status_code for _ in range(3)] == [429] * 3

        def rates() -> tuple[float, float] | None:
            with live_server.sessions() as session:
                row = session.get(EndpointActivity, (route.endpoint_id, counting.name))
                if row is None or not row.completion_rps:
                    return None
                # 9 arrived, 6 completed: shed ones are not work done
                return (
                    (row.arrival_rps, row.completion_rps)
                    if abs(row.arrival_rps / row.completion_rps - 1.5) < 0.01
                    else None
                )

        arrivals, completions = wait_for(rates, timeout=10, what="9 arrivals and 6 completions in one window")
        assert arrivals > completions > 0
    finally:
        counting.stop()
        thread.join(timeout=15)


def test_a_stopping_gateway_writes_its_last_requests_and_nothing_in_flight(
    live_server: LiveServer, routed: str
) -> None:
    quiet, thread = start_gateway(live_server, activity_seconds=3600)  # no periodic write during the test
    wait_for(lambda: True if quiet.table.get("admin", "chat") else None, timeout=10, what="route")
    route = quiet.table.get("admin", "chat")
    assert route is not None
    assert httpx.get(f"http://127.0.0.1:{quiet.ports['public']}/admin/chat/info").status_code == 200
    quiet.stop()
    thread.join(timeout=15)
    with live_server.sessions() as session:
        row = session.get(EndpointActivity, (route.endpoint_id, quiet.name))
        assert row is not None
        assert row.last_request_at is not None
        assert row.in_flight == 0
