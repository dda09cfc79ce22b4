"""CORS, answered by the gateway itself: a browser page (the web console's playground) calls endpoints on the
gateway's origin with a token in the Authorization header. Preflights are answered before any token check and
whether or not the endpoint exists; answers (errors included) carry Access-Control-Allow-Origin for allowed
origins; the engine's own CORS headers never pass."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from gateway.proxy import Cors
from tests.conftest import LiveServer
from tests.factories import ADMIN_TOKEN
from tests.fixtures.engine import FakeEngine
from tests.gateway.conftest import Running, start_gateway
from tests.gateway.test_http import Reader

CONSOLE = "http://127.0.0.1:8000"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


ASKED = "authorization, content-type, x-scale-up-timeout"


def preflight(origin: str = CONSOLE, headers: str = ASKED) -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": headers}


@pytest.fixture(scope="module")
def secured(gateway: Running, engine: FakeEngine) -> str:
    """An endpoint that takes a token (a preflight never carries one)."""
    gateway.set_status(gateway.create("cors", type="authenticated"), engines=[engine])
    gateway.serving("admin", "cors")
    return f"{gateway.url}/admin/cors"


def test_a_preflight_is_answered_by_the_gateway_without_a_token(secured: str, engine: FakeEngine) -> None:
    before = engine.control()["requests"]
    answer = httpx.options(f"{secured}/v1/chat/completions", headers=preflight())
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "POST" in answer.headers["access-control-allow-methods"]
    assert answer.headers["access-control-allow-headers"] == ASKED
    assert int(answer.headers["access-control-max-age"]) > 0
    assert "access-control-allow-credentials" not in answer.headers  # never: the token is no cookie
    assert answer.content == b""
    assert engine.control()["requests"] == before  # the engine never saw it


def test_a_preflight_says_nothing_about_whether_an_endpoint_exists(gateway: Running, secured: str) -> None:
    known = httpx.options(f"{secured}/v1/chat/completions", headers=preflight())
    unknown = httpx.options(f"{gateway.url}/admin/no-such-endpoint/v1/chat/completions", headers=preflight())
    assert (unknown.status_code, unknown.headers.get("access-control-allow-origin")) == (204, "*")
    assert {k: v for k, v in unknown.headers.items() if k != "date"} == {
        k: v for k, v in known.headers.items() if k != "date"
    }


def test_a_preflight_has_no_body_and_keeps_the_connection(gateway: Running, secured: str) -> None:
    sock = socket.create_connection(("127.0.0.1", gateway.gateway.ports["public"]), timeout=10)
    try:
        sock.sendall(
            b"OPTIONS /admin/cors/v1/chat/completions HTTP/1.1\r\nHost: x\r\nOrigin: http://a.example\r\n"
            b"Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization\r\n\r\n"
            b"GET /admin/cors/health HTTP/1.1\r\nHost: x\r\nOrigin: http://a.example\r\n"
            b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n\r\n"
        )
        reader = Reader(sock)
        status, headers, _ = reader.response(head_only=True)
        assert status == 204
        assert "content-length" not in headers  # RFC 9110: a 204 has no body
        assert "transfer-encoding" not in headers
        status, headers, body = reader.response()
        assert status == 200, body
        assert headers["access-control-allow-origin"] == "*"
    finally:
        sock.close()


def test_header_lists_that_are_not_header_names_are_not_echoed(secured: str) -> None:
    answer = httpx.options(f"{secured}/v1/chat/completions", headers=preflight(headers="authorization; x=<y>"))
    assert answer.status_code == 204
    assert "access-control-allow-headers" not in answer.headers


def test_answers_to_a_page_carry_the_allow_origin_header_errors_included(secured: str) -> None:
    denied = httpx.post(f"{secured}/v1/chat/completions", json={}, headers={"Origin": CONSOLE})
    assert denied.status_code == 401  # no token: the page can read why
    assert denied.headers["access-control-allow-origin"] == "*"
    assert "missing token" in denied.json()["error"]
    served = httpx.get(f"{secured}/echo/x", headers={"Origin": CONSOLE, **AUTH})
    assert served.status_code == 200
    assert served.headers["access-control-allow-origin"] == "*"
    assert served.headers["access-control-expose-headers"] == "*"  # Retry-After, X-Request-Id ...
    assert served.json()["headers"]["origin"] == CONSOLE  # forwarded as sent
    plain = httpx.get(f"{secured}/echo/x", headers=AUTH)  # no Origin: not a browser's cross-origin call
    assert "access-control-allow-origin" not in plain.headers


def test_a_streamed_chat_reaches_a_page(secured: str) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True}
    with httpx.stream(
        "POST", f"{secured}/v1/chat/completions", json=body, headers={"Origin": CONSOLE, **AUTH}
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "*"
        events = [line for line in answer.iter_lines() if line.startswith("data: ")]
    assert len(events) > 1
    assert events[-1] == "data: [DONE]"


@dataclass
class Upstream:
    """An engine that answers every request with CORS headers of its own."""

    url: str
    address: str


class _Loose(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the name http.server calls
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "http://evil.example")
        self.send_header("Access-Control-Allow-Credentials", "true")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def loose() -> Iterator[Upstream]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Loose)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    yield Upstream(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}")
    server.shutdown()
    server.server_close()


def test_the_engines_own_cors_headers_are_replaced(gateway: Running, loose: Upstream) -> None:
    gateway.set_status(gateway.create("loose"), engines=[loose])  # type: ignore[list-item]
    gateway.serving("admin", "loose")
    answer = httpx.get(f"{gateway.url}/admin/loose/anything", headers={"Origin": CONSOLE})
    assert answer.status_code == 200
    assert answer.headers.get_list("access-control-allow-origin") == ["*"]
    assert "access-control-allow-credentials" not in answer.headers
    plain = httpx.get(f"{gateway.url}/admin/loose/anything")
    assert not [k for k in plain.headers if k.startswith("access-control-")]


@pytest.fixture(scope="module")
def listed(live_server: LiveServer, gateway: Running, engine: FakeEngine) -> Iterator[str]:
    """A gateway that lets only the console's origin in (DAIS_GATEWAY__CORS_ORIGINS), before an endpoint."""
    gateway.set_status(gateway.create("listed", type="authenticated"), engines=[engine])
    gw, thread = start_gateway(live_server, cors_origins=[CONSOLE + "/"])
    try:
        Running(gw, live_server).serving("admin", "listed")
        yield f"http://127.0.0.1:{gw.ports['public']}/admin/listed"
    finally:
        gw.stop()
        thread.join(timeout=15)


def test_a_list_of_origins_lets_only_those_in(listed: str) -> None:
    answer = httpx.options(f"{listed}/v1/chat/completions", headers=preflight())
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == CONSOLE
    assert "origin" in answer.headers["vary"].lower()
    served = httpx.get(f"{listed}/health", headers={"Origin": CONSOLE, **AUTH})
    assert (served.headers["access-control-allow-origin"], served.headers["vary"]) == (CONSOLE, "origin")

    other = httpx.options(f"{listed}/v1/chat/completions", headers=preflight("http://elsewhere.example"))
    assert other.status_code == 401  # not answered as a preflight: an OPTIONS request like any other, refused
    assert "access-control-allow-origin" not in other.headers
    elsewhere = httpx.get(f"{listed}/health", headers={"Origin": "http://elsewhere.example", **AUTH})
    assert elsewhere.status_code == 200
    assert "access-control-allow-origin" not in elsewhere.headers


def test_the_policy_of_a_setting() -> None:
    assert Cors(["*"]).allowed(b"http://any.example") == b"*"
    only = Cors(["https://console.example.com/", "http://127.0.0.1:8000"])
    assert only.allowed(b"https://console.example.com") == b"https://console.example.com"
    assert only.allowed(b"http://127.0.0.1:8000") == b"http://127.0.0.1:8000"
    assert only.allowed(b"https://console.example.com.evil.example") is None
    assert only.allowed(b"null") is None
