"""The gateway's limits, on raw sockets against a gateway with short ones: each answers the right status (or
closes where no answer can be sent), logs one line and counts in ``dais_gateway_limit_refusals_total``."""

from __future__ import annotations

import contextlib
import logging
import select
import socket
from collections.abc import Iterator

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY

from tests.conftest import LiveServer
from tests.fixtures import scrape
from tests.fixtures.engine import FakeEngine
from tests.fixtures.kube import wait_for
from tests.gateway.conftest import Running, start_gateway
from tests.gateway.scripted import ScriptedUpstream
from tests.gateway.test_http import Reader

LIMITS = {
    "header_timeout_seconds": 1,
    "body_timeout_seconds": 1,
    "idle_timeout_seconds": 1,
    "write_timeout_seconds": 1,
    "max_head_bytes": 2048,
    "max_upstream_head_bytes": 4096,
    "max_body_bytes": 4096,
}


@pytest.fixture(scope="module")
def limited(live_server: LiveServer) -> Iterator[Running]:
    gw, thread = start_gateway(live_server, **LIMITS)
    yield Running(gw, live_server)
    gw.stop()
    thread.join(timeout=15)


@pytest.fixture(scope="module")
def routed(limited: Running, engine: FakeEngine) -> str:
    return limited.serve("limits", engine)


@pytest.fixture
def wire(limited: Running, routed: str) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", limited.gateway.ports["public"]), timeout=10)
    yield sock
    sock.close()


class Refusals:
    """The counter of one limit and the log lines it wrote, from the test's start."""

    def __init__(self, limit: str, caplog: pytest.LogCaptureFixture) -> None:
        self.limit = limit
        self.caplog = caplog
        self.before = self.count()
        caplog.set_level(logging.DEBUG, logger="dais.gateway")
        caplog.clear()

    def count(self) -> float:
        return REGISTRY.get_sample_value("dais_gateway_limit_refusals_total", {"limit": self.limit}) or 0.0

    def added(self) -> float:
        return self.count() - self.before

    def lines(self) -> list[str]:
        return [r.getMessage() for r in self.caplog.records if f"(limit: {self.limit})" in r.getMessage()]

    def once(self) -> None:
        wait_for(lambda: self.added() == 1, timeout=10, what=f"the {self.limit} refusal counted")
        assert self.added() == 1
        assert len(self.lines()) == 1, self.lines()


def refused(sock: socket.socket, status: int) -> dict[str, object]:
    reader = Reader(sock)
    got, headers, body = reader.response()
    assert got == status, body
    assert headers["connection"] == "close"
    assert reader.closed()
    answer: dict[str, object] = orjson.loads(body)
    assert answer["statusCode"] == status
    return answer


def requests_seen(engine: FakeEngine, limited: Running) -> int:
    """The engine's request count once one sent now has arrived (so has one sent before it, if it ever does)."""
    assert httpx.get(f"{limited.url}/admin/limits/echo/sentinel").status_code == 200
    return int(engine.control()["requests"])


def test_a_slow_request_head_gets_408(wire: socket.socket, caplog: pytest.LogCaptureFixture) -> None:
    refusals = Refusals("header_timeout", caplog)
    wire.sendall(b"GET /admin/limits/echo/slow HTTP/1.1\r\nHost: x\r\nX-Then: ")  # and nothing more
    assert "request head" in str(refused(wire, 408)["error"])
    refusals.once()


def test_a_connection_that_sends_nothing_gets_408(wire: socket.socket, caplog: pytest.LogCaptureFixture) -> None:
    refusals = Refusals("header_timeout", caplog)
    refused(wire, 408)
    refusals.once()


def test_a_stalled_body_gets_408_and_never_reaches_the_engine(
    wire: socket.socket, limited: Running, engine: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    before = requests_seen(engine, limited)
    refusals = Refusals("body_timeout", caplog)
    wire.sendall(b"POST /admin/limits/echo/stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    assert "request body stalled" in str(refused(wire, 408)["error"])
    refusals.once()
    assert requests_seen(engine, limited) == before + 1  # the sentinel alone


def replica_freed(limited: Running) -> None:
    """Waits until the gateway holds no connection to a replica for an answer in progress."""
    pool = limited.gateway.pool
    assert pool is not None
    wait_for(lambda: not pool.busy, timeout=10, what="the connection to the replica closed")


def test_a_stalled_chunked_body_gets_408_and_frees_the_replica(
    wire: socket.socket, limited: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """A chunked body streams to the replica as it comes: the stall ends the replica's request too."""
    refusals = Refusals("body_timeout", caplog)
    wire.sendall(
        b"POST /admin/limits/echo/stalled HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    )
    refused(wire, 408)
    refusals.once()
    replica_freed(limited)


def test_a_body_the_gateway_has_not_asked_for_yet_is_no_stall(
    limited: Running, wire: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that waits for "100 Continue" while its request is held (a cold start) is not timed out."""
    limited.set_status(limited.create("cold-expect"), engines=[], ready=0, target=0)
    limited.serving("admin", "cold-expect", expected=False)
    refusals = Refusals("body_timeout", caplog)
    wire.sendall(
        b"POST /admin/cold-expect/echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
        b"X-Scale-Up-Timeout: 3\r\n\r\n"  # held three times as long as the body timeout
    )
    status, _, body = Reader(wire).response()
    assert status == 503
    assert "no replica became ready" in orjson.loads(body)["error"]
    assert refusals.added() == 0


def test_an_idle_keep_alive_connection_is_closed(wire: socket.socket, caplog: pytest.LogCaptureFixture) -> None:
    refusals = Refusals("idle_timeout", caplog)
    wire.sendall(b"GET /admin/limits/echo/once HTTP/1.1\r\nHost: x\r\n\r\n")
    reader = Reader(wire)
    assert reader.response()[0] == 200
    assert reader.closed()  # no answer: nothing was asked
    refusals.once()


def test_a_client_that_stops_reading_is_cut_and_frees_the_replica(
    limited: Running, routed: str, caplog: pytest.LogCaptureFixture
) -> None:
    refusals = Refusals("write_timeout", caplog)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", limited.gateway.ports["public"]))
    with sock:
        body = orjson.dumps({"inputs": "hi", "parameters": {"max_new_tokens": 1_000_000}})
        sock.sendall(
            b"POST /admin/limits/generate_stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        wait_for(lambda: refusals.added(), timeout=30, what="the write timeout")  # the client reads nothing meanwhile
        refusals.once()
        replica_freed(limited)
        received = b""
        with contextlib.suppress(ConnectionResetError):  # where the reset has come first, nothing more to read
            while data := sock.recv(1 << 20):
                received += data
        assert not received.endswith(b"0\r\n\r\n")  # cut, not ended


def test_a_request_head_over_the_limit_gets_431(wire: socket.socket, caplog: pytest.LogCaptureFixture) -> None:
    refusals = Refusals("head_size", caplog)
    wire.sendall(b"GET /admin/limits/echo/x HTTP/1.1\r\nHost: x\r\n" + b"X-A: a\r\n" * 300 + b"\r\n")
    assert "request headers over 2048 bytes" in str(refused(wire, 431)["error"])
    refusals.once()


def test_a_header_line_that_never_ends_gets_431(wire: socket.socket, caplog: pytest.LogCaptureFixture) -> None:
    """The parser hands over a header once its line ends: what is read meanwhile counts too."""
    refusals = Refusals("head_size", caplog)
    wire.sendall(b"GET /admin/limits/echo/x HTTP/1.1\r\nHost: x\r\nX-A: ")
    for _ in range(20):  # a read at a time, until the gateway answers
        wire.sendall(b"a" * 512)
        if select.select([wire], [], [], 0.05)[0]:
            break
    refused(wire, 431)
    refusals.once()


def test_a_request_line_over_the_limit_gets_414(wire: socket.socket, caplog: pytest.LogCaptureFixture) -> None:
    refusals = Refusals("head_size", caplog)
    wire.sendall(b"GET /admin/limits/" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    refused(wire, 414)
    refusals.once()


def test_a_body_over_the_limit_gets_413(wire: socket.socket, caplog: pytest.LogCaptureFixture) -> None:
    refusals = Refusals("body_size", caplog)
    wire.sendall(b"POST /admin/limits/echo/big HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000)
    reader = Reader(wire)
    status, _, body = reader.response()
    assert status == 413
    assert "over 4096 bytes" in orjson.loads(body)["error"]
    refusals.once()


def test_a_replica_answer_with_too_large_a_head_gets_502(
    limited: Running, engine: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    with ScriptedUpstream() as upstream:
        ident = limited.create("big-head")
        limited.set_status(ident, engines=[engine], addresses=[upstream.address], upstream=upstream.url)
        limited.serving("admin", "big-head")
        url = f"{limited.url}/admin/big-head/big-head"
        assert httpx.get(f"{url}/1000").status_code == 200  # under the limit: relayed
        refusals = Refusals("upstream_head_size", caplog)
        answer = httpx.get(f"{url}/5000")
        assert answer.status_code == 502
        assert "response headers are over 4096 bytes" in answer.json()["error"]
        refusals.once()
        text = httpx.get(f"{limited.internal_url}/metrics").text
        assert scrape.value(text, "dais_gateway_limit_refusals_total", limit="upstream_head_size")


def test_past_max_connections_a_new_one_gets_503(
    live_server: LiveServer, engine: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    gw, thread = start_gateway(live_server, max_connections=2)
    try:
        running = Running(gw, live_server)
        running.serve("capped", engine)
        address = ("127.0.0.1", gw.ports["public"])
        request = b"GET /admin/capped/echo/x HTTP/1.1\r\nHost: x\r\n\r\n"
        first, second = socket.create_connection(address, timeout=10), socket.create_connection(address, timeout=10)
        readers = [Reader(first), Reader(second)]
        for sock, reader in zip((first, second), readers, strict=True):
            sock.sendall(request)
            assert reader.response()[0] == 200
        refusals = Refusals("connections", caplog)
        with socket.create_connection(address, timeout=10) as third:
            third.sendall(request)
            reader = Reader(third)
            status, headers, _ = reader.response()
            assert status == 503
            assert headers["retry-after"] == "1"
            assert reader.closed()
        refusals.once()
        first.close()

        def served() -> bool:
            with socket.create_connection(address, timeout=10) as again:
                again.sendall(request)
                return Reader(again).response()[0] == 200

        wait_for(served, timeout=10, what="a connection served once one of the two closed")
        second.sendall(request)
        assert readers[1].response()[0] == 200
        second.close()
    finally:
        gw.stop()
        thread.join(timeout=15)
