"""Request smuggling: every request whose length two servers could read differently is refused with 400 and a
closed connection, and nothing of it (nor of what it smuggles) reaches the engine. The refusals are the parser's
(llhttp, strict); these tests pin them down. The gateway re-frames every body it forwards besides."""

from __future__ import annotations

import socket

import httpx
import orjson
import pytest

from tests.fixtures.engine import FakeEngine
from tests.gateway.conftest import Running
from tests.gateway.test_http import Reader

HEAD = b"POST /admin/smuggle/echo/outer HTTP/1.1\r\nHost: x\r\n"
INNER = b"GET /admin/smuggle/echo/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

SHAPES = {
    "transfer-encoding with content-length": HEAD
    + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    + INNER,
    "content-length with transfer-encoding": HEAD
    + b"Transfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n0\r\n\r\n"
    + INNER,
    "two content-lengths that differ": HEAD + b"Content-Length: 0\r\nContent-Length: 60\r\n\r\n" + INNER,
    # RFC 9112 lets a server take identical values as one; refusing them too leaves nothing to interpret.
    "two identical content-lengths": HEAD + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + INNER,
    "a content-length list": HEAD + b"Content-Length: 5, 5\r\n\r\nhello" + INNER,
    "chunked, identity": HEAD + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + INNER,
    "chunked then identity in two headers": HEAD
    + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"
    + INNER,
    "obs-fold with a space": HEAD + b"Content-Length: 0\r\nX-Folded: a\r\n b\r\n\r\n" + INNER,
    "obs-fold with a tab": HEAD + b"Content-Length: 0\r\nX-Folded: a\r\n\tb\r\n\r\n" + INNER,
    "obs-fold hiding transfer-encoding": HEAD + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + INNER,
    "a bare LF ending the request line": b"POST /admin/smuggle/echo/outer HTTP/1.1\nHost: x\r\n\r\n" + INNER,
    "a bare LF ending a header": HEAD + b"Content-Length: 0\nX-A: b\r\n\r\n" + INNER,
    "a bare LF ending the head": HEAD + b"Content-Length: 0\r\n\n" + INNER,
    "a space before the colon": HEAD + b"Content-Length : 60\r\n\r\n" + INNER,
    "a space before the colon of transfer-encoding": HEAD + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + INNER,
    "an invalid chunk size": HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n" + INNER,
    "a negative chunk size": HEAD + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n" + INNER,
    "a chunk size that overflows": HEAD
    + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n"
    + INNER,
    "a chunk longer than its size": HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n" + INNER,
}


@pytest.fixture(scope="module")
def routed(gateway: Running, engine: FakeEngine) -> str:
    return gateway.serve("smuggle", engine)


def engine_requests(engine: FakeEngine, routed: str) -> int:
    """The engine's request count once a request sent now has arrived (as would one sent before, if ever)."""
    assert httpx.get(f"{routed}/echo/sentinel").status_code == 200
    return int(engine.control()["requests"])


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_smuggling_shape_is_refused_and_never_reaches_the_engine(
    gateway: Running, routed: str, engine: FakeEngine, shape: str
) -> None:
    before = engine_requests(engine, routed)
    with socket.create_connection(("127.0.0.1", gateway.gateway.ports["public"]), timeout=10) as sock:
        sock.sendall(SHAPES[shape])  # one write: the gateway reads it whole, as an attacker would send it
        reader = Reader(sock)
        status, headers, body = reader.response()
        assert status == 400, body
        assert headers["connection"] == "close"
        assert "malformed HTTP request" in orjson.loads(body)["error"]
        assert reader.closed()
    assert engine_requests(engine, routed) == before + 1  # the second sentinel alone
