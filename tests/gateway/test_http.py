"""The gateway's own HTTP/1.1 handling, byte by byte on raw sockets: what general clients never exercise."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.fixtures.engine import FakeEngine
from tests.gateway.conftest import Running


@pytest.fixture(scope="module")
def routed(gateway: Running, engine: FakeEngine) -> str:
    return gateway.serve("wire", engine)


@pytest.fixture
def wire(gateway: Running, routed: str) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", gateway.gateway.ports["public"]), timeout=10)
    yield sock
    sock.close()


class Reader:
    """Reads HTTP/1.1 responses off a socket (Content-Length, chunked, or to the end)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise EOFError(f"connection closed before {marker!r}; got {self.buffer[:200]!r}")
        head, self.buffer = self.buffer.split(marker, 1)
        return head

    def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self._fill():
                raise EOFError("connection closed mid-body")
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def response(self, *, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        lines = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        if head_only:
            return status, headers, b""
        if "content-length" in headers:
            return status, headers, self._exactly(int(headers["content-length"]))
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self._until(b"\r\n"), 16):
                body += self._exactly(size)
                self._exactly(2)
            self._exactly(2)
            return status, headers, body
        while self._fill():
            pass
        body, self.buffer = self.buffer, b""
        return status, headers, body

    def closed(self) -> bool:
        return not self.buffer and not self._fill()


def test_pipelined_requests_are_answered_in_order(wire: socket.socket) -> None:
    requests = (
        b"".join(b"GET /admin/wire/echo/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5))
        + b"POST /admin/wire/echo/body HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    )
    wire.sendall(requests)
    reader = Reader(wire)
    paths = []
    for _ in range(6):
        status, _, body = reader.response()
        assert status == 200
        paths.append(orjson.loads(body)["path"])
    assert paths == [f"/echo/{i}" for i in range(5)] + ["/echo/body"]


def test_a_pipelined_burst_behind_a_slow_request_is_answered_in_order(wire: socket.socket) -> None:
    """Thousands of requests answered at once (unknown endpoints) queue behind one still waiting upstream."""
    count = 3000
    wire.sendall(
        b"GET /admin/wire/slow HTTP/1.1\r\nHost: x\r\nX-Fake-Delay-Ms: 300\r\n\r\n"
        + b"".join(b"GET /admin/nope-%d/x HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(count))
    )
    reader = Reader(wire)
    assert reader.response()[0] == 200
    for i in range(count):
        status, _, body = reader.response()
        assert status == 404
        assert f"admin/nope-{i}" in orjson.loads(body)["error"]


def test_head_keeps_the_connection_usable(wire: socket.socket) -> None:
    wire.sendall(
        b"HEAD /admin/wire/echo/h HTTP/1.1\r\nHost: x\r\n\r\nGET /admin/wire/echo/after HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    reader = Reader(wire)
    status, headers, _ = reader.response(head_only=True)
    assert status == 200
    assert int(headers["content-length"]) > 0  # describes the body a GET would get; none is sent
    status, _, body = reader.response()
    assert status == 200
    assert orjson.loads(body)["path"] == "/echo/after"


def test_http_1_0_gets_its_answer_and_the_connection_closes(wire: socket.socket) -> None:
    wire.sendall(b"GET /admin/wire/echo/old HTTP/1.0\r\nHost: x\r\n\r\n")
    reader = Reader(wire)
    status, headers, body = reader.response()
    assert status == 200
    assert "chunked" not in headers.get("transfer-encoding", "")
    assert orjson.loads(body)["path"] == "/echo/old"
    assert reader.closed()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"GET /admin/wire/echo/x HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
        (b"GET /admin/wire/echo/x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ],
)
def test_bad_requests_get_an_error_body_and_a_closed_connection(
    wire: socket.socket, request_bytes: bytes, status: int
) -> None:
    wire.sendall(request_bytes)
    reader = Reader(wire)
    got, headers, body = reader.response()
    assert got == status
    assert headers["connection"] == "close"
    assert orjson.loads(body)["statusCode"] == status
    assert reader.closed()


def test_an_upgrade_is_ignored_and_the_connection_closes_after_the_answer(wire: socket.socket) -> None:
    wire.sendall(
        b"GET /admin/wire/echo/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        b"\x81\x05hello"  # a WebSocket frame, which must not be read as the next request
    )
    reader = Reader(wire)
    status, headers, body = reader.response()
    assert status == 200
    assert headers["connection"] == "close"
    assert "upgrade" not in orjson.loads(body)["headers"]
    assert reader.closed()


def test_a_large_chunked_upload_streams_through(routed: str) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"y" * (128 << 10)  # 5 MiB in all, past the gateway's 1 MiB read-ahead

    answer = httpx.post(f"{routed}/echo/upload", content=chunks(), timeout=30)
    assert answer.status_code == 200
    assert answer.json()["body_bytes"] == 40 * (128 << 10)


def test_expect_100_continue_is_honoured(wire: socket.socket) -> None:
    wire.sendall(
        b"POST /admin/wire/echo/expect HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    reader = Reader(wire)
    status, _, _ = reader.response(head_only=True)
    assert status == 100  # the body is sent only now
    wire.sendall(b"hello")
    status, _, body = reader.response()
    assert status == 200
    seen = orjson.loads(body)
    assert seen["body_bytes"] == 5
    assert "expect" not in seen["headers"]  # the gateway answered it; the engine is not asked again
