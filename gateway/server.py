"""The gateway's HTTP/1.1 server: asyncio protocols around httptools (llhttp, the parser of Node.js).

One ``Connection`` per client socket. Requests are handled one at a time per connection, in order; a
pipelined request waits (its bytes parsed, reading paused) until the one before it is answered. A request
with a small body (or none) is handled once it has all arrived, and the handler takes the body whole; a
chunked, large or ``Expect: 100-continue`` body streams to a handler started as soon as the head is parsed.
A handler answers at once (returning None) or returns the coroutine that will.

Responses are written through the connection (``send`` for a whole one; ``begin`` / ``write`` / ``end`` for a
streamed one). Writes are gathered and go out on ``flush``, so the upstream side can hand over everything one
read brought in (head and body of a small answer, or several events) in one system call, while still passing
each read on the moment it arrives.

Limits (``GatewaySettings``): the head's size and the time it takes to arrive, the body's silences, a keep-alive
connection's idleness, how long a client may leave its answer unread, and the number of connections. Past one,
the client gets 408, 413, 414, 431 or 503 and the connection closes (or it just closes, where no answer can be
sent), with one log line and ``dais_gateway_limit_refusals_total{limit}``. Timeouts are kept by one sweep a tick
for all connections, which notes when it first saw each in its present phase: no timer or clock read per request.

Why not a framework: on this project's loopback benchmark (``benchmarks/gateway.py``) aiohttp's server and
client together reached a tenth of nginx's throughput; this server with ``gateway.upstream`` does the same
work at several times that rate, the difference being the per-request objects, header multidicts and
coroutine hops a general framework needs and a proxy does not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast

import httptools
import orjson

from core.settings import GatewaySettings
from gateway import metrics

log = logging.getLogger("dais.gateway.server")

WHOLE_BODY_BYTES = 256 << 10  # a body up to this size is read whole before its request is handled
BODY_HIGH_WATER = 1 << 20  # a streamed request body buffered beyond this pauses reading from the client

REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_CHUNK_END = b"0\r\n\r\n"

Headers = list[tuple[bytes, bytes]]


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


class _Chunks:
    """``async for`` over a ``Body`` (a class, not an async generator: mypyc compiles no async generators)."""

    __slots__ = ("_body",)

    def __init__(self, body: Body) -> None:
        self._body = body

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        return await self._body.next_chunk()


class Body:
    """A request body as it arrives. ``whole()`` when it has all arrived and nobody has read from it; otherwise
    iterate (``async for``), which also keeps the client's socket paused while the buffer is full."""

    __slots__ = ("_chunks", "_conn", "_error", "_size", "_started", "_waiter", "complete", "limit", "received")

    def __init__(self, conn: Connection, limit: int) -> None:
        self._conn = conn
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._started = False
        self.complete = False
        self.limit = limit
        self.received = 0

    def whole(self) -> bytes | None:
        """The whole body if it has all arrived; raises ``BodyTooLarge`` once it is over the limit."""
        if self._error is not None:
            raise self._error
        if not self.complete or self._started:
            return None
        self._started = True
        return b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]

    def __aiter__(self) -> _Chunks:
        if not self._started:
            self._started = True
            self._conn.continue_if_expected()
        return _Chunks(self)

    async def next_chunk(self) -> bytes:
        """The next chunk as it arrives; StopAsyncIteration at the end."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._size -= len(chunk)
                if self._size < BODY_HIGH_WATER // 2:
                    self._conn.unpause("body")
                return chunk
            if self._error is not None:
                raise self._error
            if self.complete:
                raise StopAsyncIteration
            self._waiter = self._conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    # -- fed by the connection --------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        if self._error is not None:
            return
        self.received += len(chunk)
        if self.received > self.limit:
            self.fail(BodyTooLarge(f"request body over {self.limit} bytes"))
            return
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size > BODY_HIGH_WATER:
            self._conn.pause("body")
        self._wake()

    def finish(self) -> None:
        self.complete = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if self._error is None and not self.complete:
            self._error = exc
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Request:
    """One parsed request head. ``headers``: all of them in order, names lower-case; ``fields``: each name's last
    value."""

    __slots__ = ("body", "fields", "headers", "keep_alive", "method", "peer", "target", "version")

    def __init__(
        self, method: str, target: str, version: str, headers: Headers, fields: dict[bytes, bytes], peer: str
    ) -> None:
        self.method = method
        self.target = target  # the request target as sent: path and query, still percent-encoded
        self.version = version
        self.headers = headers
        self.fields = fields
        self.peer = peer
        self.keep_alive = True
        self.body: Body | None = None  # None: the request has no body

    def header(self, name: bytes) -> str | None:
        value = self.fields.get(name)
        return value.decode("latin-1") if value is not None else None


Handler = Callable[[Request, "Connection"], Coroutine[Any, Any, None] | None]


def limit_reached(limit: str, message: str, *, level: int = logging.WARNING) -> None:
    """One of the limits cut a request or connection short: one log line, one count."""
    metrics.LIMIT_REFUSALS.labels(limit).inc()
    log.log(level, "%s (limit: %s)", message, limit)


class HttpServer:
    """The protocol factory for ``loop.create_server``; ``connections`` are the open ones (closed on stop)."""

    def __init__(self, handler: Handler, settings: GatewaySettings) -> None:
        self.handler = handler
        self.max_body_bytes = settings.max_body_bytes
        self.max_head_bytes = settings.max_head_bytes
        self.max_connections = settings.max_connections
        self.header_timeout = settings.header_timeout_seconds
        self.body_timeout = settings.body_timeout_seconds
        self.idle_timeout = settings.idle_timeout_seconds
        self.write_timeout = settings.write_timeout_seconds
        self.connections: set[Connection] = set()
        self.draining = False
        self.drained = asyncio.Event()  # set once draining and no request is in flight
        self._sweeper: asyncio.Task[None] | None = None

    def __call__(self) -> Connection:
        return Connection(self)

    def drain(self) -> None:
        """No more keep-alive: idle connections close now, the others once their answer is out."""
        self.draining = True
        for conn in list(self.connections):
            conn.drain()
        self.settled()

    def in_flight(self) -> int:
        """Connections with a request in progress (its head, its body or its answer)."""
        return sum(1 for conn in self.connections if conn.in_flight)

    def settled(self) -> None:
        if not self.drained.is_set() and not self.in_flight():
            self.drained.set()

    def close_all(self) -> None:
        """Closes every connection; those with a request in flight are cut."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            if conn.in_flight:
                conn.abort()
            else:
                conn.close()

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep(loop))

    async def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """One sweep for all connections' timeouts (a timer per request showed in the profile); each fires up to
        a tick late."""
        tick = min(1.0, min(self.header_timeout, self.body_timeout, self.idle_timeout, self.write_timeout) / 4)
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            for conn in list(self.connections):
                conn.sweep(now)


class Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = ""
        self.closed = False
        self._over_capacity = False  # opened past max_connections: its first request is answered 503
        # the request being parsed
        self._url = b""
        self._headers: Headers = []
        self._fields: dict[bytes, bytes] = {}
        self._head_bytes = 0  # the head's size as parsed (request line and complete headers)
        self._head_raw = 0  # bytes read while its head is incomplete, but for the read it began in (-1 there)
        self._in_head = False  # between a request's first byte and the end of its head
        self._parsing: Request | None = None
        # what the timeout sweep goes by: the requests begun, the reads, and what it saw last and when
        self._turn = 0
        self._reads = 0
        self._seen: tuple[str, int, int] = ("", 0, 0)
        self._seen_at = 0.0
        self._write_paused_at: float | None = None
        self._continued: Request | None = None  # the last request told "100 Continue"
        # requests parsed and waiting for their turn, and the one being handled
        self._queue: deque[Request] = deque()
        self._active: Request | None = None
        self._stepping = False
        self._task: asyncio.Task[None] | None = None
        # the response being written
        self._out: list[bytes] = []
        self._framing = ""  # "" not started, "length", "chunked", "close" (until the connection closes), "none"
        self._ended = False
        self._close_after = False
        self.extra: Headers = []  # headers the handler adds to its answer, whatever it is (CORS)
        self._paused: set[str] = set()
        self.on_write_pause: Callable[[bool], None] | None = None  # the upstream being relayed, to follow suit

    # -- asyncio.Protocol -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else ""
        server = self.server
        self._over_capacity = len(server.connections) >= server.max_connections
        server.connections.add(self)
        server.watch(self.loop)

    def data_received(self, data: bytes) -> None:
        self._reads += 1
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request is answered as a plain one, its Upgrade ignored (RFC 9110 lets a server do so);
            # what follows on this connection would be another protocol, so nothing more is read.
            self.pause("upgrade")
        except httptools.HttpParserError as exc:
            cause = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else exc
            if isinstance(cause, _Refusal):
                self._refuse(cause.status, cause.message, limit=cause.limit, headers=cause.headers)
            else:
                self._refuse(400, f"malformed HTTP request: {exc}")
            return
        if self._in_head:  # a header line that never ends is never handed to on_header: count what came
            if self._head_raw < 0:
                self._head_raw = 0
            else:
                self._head_raw += len(data)
                if self._head_raw > self.server.max_head_bytes:
                    status, message, limit = self._head_too_large()
                    self._refuse(status, message, limit=limit)

    def connection_lost(self, exc: Exception | None) -> None:
        busy = self.in_flight
        self.closed = True
        server = self.server
        server.connections.discard(self)
        if self._parsing is not None and self._parsing.body is not None:
            self._parsing.body.fail(ClientGone("the client closed the connection"))
        if self._task is not None and not self._task.done():
            self._task.cancel()  # the client went away: so does the upstream call
        self._queue.clear()
        if server.draining and busy:  # an idle one leaving changes nothing: no scan of all per close
            server.settled()

    def pause_writing(self) -> None:
        self._write_paused_at = self.loop.time()
        if self.on_write_pause is not None:
            self.on_write_pause(True)

    def resume_writing(self) -> None:
        self._write_paused_at = None
        if self.on_write_pause is not None:
            self.on_write_pause(False)

    # -- httptools callbacks ----------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._fields = {}
        self._head_bytes = 0
        self._head_raw = -1
        self._in_head = True
        self._turn += 1

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if self._head_bytes > self.server.max_head_bytes:
            limit = self.server.max_head_bytes
            raise _Refusal(414, f"request line over {limit} bytes: use a shorter URL", limit="head_size")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.server.max_head_bytes:
            raise _Refusal(*self._head_too_large())
        name = name.lower()  # as HTTP/2 has them, and as they are forwarded
        self._headers.append((name, value))
        self._fields[name] = value

    def _head_too_large(self) -> tuple[int, str, str]:
        limit = self.server.max_head_bytes
        return 431, f"request headers over {limit} bytes: send fewer or shorter ones", "head_size"

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._over_capacity:
            server = self.server
            raise _Refusal(
                503,
                f"this gateway has {server.max_connections} connections open, its limit: retry shortly",
                limit="connections",
                headers=[(b"retry-after", b"1")],
            )
        parser = self.parser
        request = Request(
            parser.get_method().decode("ascii"),
            self._url.decode("latin-1"),
            parser.get_http_version(),
            self._headers,
            self._fields,
            self.peer,
        )
        request.keep_alive = parser.should_keep_alive() and request.version == "1.1" and not parser.should_upgrade()
        fields = self._fields
        if b"transfer-encoding" in fields or fields.get(b"content-length", b"0") != b"0":
            request.body = Body(self, self.server.max_body_bytes)
        self._parsing = request
        if request.body is not None and _streams(fields):
            self._dispatch(request)  # the handler starts now and reads the body as it comes

    def on_body(self, chunk: bytes) -> None:
        request = self._parsing
        if request is not None and request.body is not None:
            request.body.feed(chunk)

    def on_message_complete(self) -> None:
        request, self._parsing = self._parsing, None
        if request is None:
            return
        if request.body is None:
            self._dispatch(request)
        else:
            request.body.finish()
            if not _streams(request.fields):
                self._dispatch(request)  # a small body: the handler gets it whole

    # -- handling ---------------------------------------------------------------------------------------------

    def _dispatch(self, request: Request) -> None:
        if self.transport is None or self.transport.is_closing():
            return  # answered and closing: what was pipelined behind is dropped
        self._queue.append(request)
        self._next()

    def _next(self) -> None:
        """Starts queued requests in order while none is in progress. A loop, not recursion: a pipelined burst
        of requests that are answered at once must not nest one call per request."""
        if self._stepping:
            return
        self._stepping = True
        try:
            while self._active is None and self._queue and not self.closed:
                self._start(self._queue.popleft())
        finally:
            self._stepping = False
        if self._queue:
            self.pause("pipeline")  # the rest wait behind the request in progress
        else:
            self.unpause("pipeline")

    def _start(self, request: Request) -> None:
        self._active = request
        self._out = []
        self._framing = ""
        self._ended = False
        self._close_after = not request.keep_alive or self.server.draining
        self.extra = []
        try:
            work = self.server.handler(request, self)
        except Exception:
            self._failed(request)
            work = None
        if work is None:  # answered at once
            self._finished(request)
            return
        # Named: a task without a name formats "Task-<n>" as it is made, once per request.
        self._task = task = self.loop.create_task(work, name="dais-request")
        task.add_done_callback(self._handled)

    def _handled(self, task: asyncio.Task[None]) -> None:
        request = self._active
        if task.cancelled() or request is None or task is not self._task:
            return  # the client went away
        if task.exception() is not None:
            self._failed(request, task.exception())
        self._finished(request)

    def _failed(self, request: Request, failure: BaseException | None = None) -> None:
        log.error("gateway handler failed on %s %s", request.method, request.target, exc_info=failure or True)
        if not self._framing:
            self.send(500, [(b"content-type", b"application/json")], b'{"error":"internal error","statusCode":500}')

    def _finished(self, request: Request) -> None:
        self._task = None
        if not self._ended:
            self.close()  # a half-sent answer ends visibly cut, not looking complete
            return
        self.flush()
        if request.body is not None and not request.body.complete:
            self._close_after = True  # the rest of its body was never read: the stream has no next request
        if self._close_after or self.closed:
            self.close()
            return
        self._active = None
        self._next()

    def continue_if_expected(self) -> None:
        request = self._active
        if request is not None and request.fields.get(b"expect", b"").lower() == b"100-continue" and self.transport:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._continued = request

    # -- writing the response ---------------------------------------------------------------------------------

    def send(self, status: int, headers: Headers, body: bytes, *, reason: bytes | None = None) -> None:
        """A whole response, in one write."""
        self._head(status, reason, headers, b"content-length: %d\r\n" % len(body))
        self._framing = "length"
        if self._active is not None and self._active.method != "HEAD":
            self._out.append(body)
        self._ended = True
        self.flush()

    def begin(self, status: int, reason: bytes | None, headers: Headers, *, length: int | None, bodiless: bool) -> None:
        """Starts a streamed response (gathered until ``flush``). ``length``: the body's size when known;
        ``bodiless``: HEAD, 204 and 304, whose headers (Content-Length included) describe a body not sent."""
        request = self._active
        if bodiless:
            extra = b"content-length: %d\r\n" % length if length is not None else b""
            self._framing = "none"
        elif length is not None:
            extra = b"content-length: %d\r\n" % length
            self._framing = "length"
        elif request is not None and request.version == "1.1":
            extra = b"transfer-encoding: chunked\r\n"
            self._framing = "chunked"
        else:
            extra = b""
            self._framing = "close"
            self._close_after = True
        self._head(status, reason, headers, extra)
        if self._framing == "none":
            self._ended = True

    def write(self, chunk: bytes) -> None:
        if not chunk or self._framing == "none":
            return
        if self._framing == "chunked":
            self._out.append(b"%x\r\n" % len(chunk))
            self._out.append(chunk)
            self._out.append(b"\r\n")
        else:
            self._out.append(chunk)

    def end(self) -> None:
        if not self._ended:
            if self._framing == "chunked":
                self._out.append(_CHUNK_END)
            self._ended = True

    def flush(self) -> None:
        if self._out:
            out, self._out = self._out, []
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.write(b"".join(out) if len(out) > 1 else out[0])

    def close(self) -> None:
        self.flush()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        """Closes without waiting for what is still to be written (``close`` waits for a client to read it)."""
        if self.transport is not None:
            self.transport.abort()

    def _head(self, status: int, reason: bytes | None, headers: Headers, extra: bytes) -> None:
        out = self._out
        out.append(b"HTTP/1.1 %d %s\r\n" % (status, reason or REASONS.get(status, b"Unknown")))
        for name, value in headers:
            out.append(name)
            out.append(b": ")
            out.append(value)
            out.append(b"\r\n")
        for name, value in self.extra:
            out.append(b"%s: %s\r\n" % (name, value))
        if self._close_after:
            out.append(b"connection: close\r\n")
        out.append(extra)
        out.append(b"\r\n")

    # -- flow control -----------------------------------------------------------------------------------------

    def pause(self, why: str) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused.add(why)

    def unpause(self, why: str) -> None:
        if why in self._paused:
            self._paused.discard(why)
            if not self._paused and self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    # -- limits and draining ----------------------------------------------------------------------------------

    @property
    def in_flight(self) -> bool:
        return self._active is not None or bool(self._queue) or self._parsing is not None or self._in_head

    def drain(self) -> None:
        if not self.in_flight:
            self.close()
        else:
            self._close_after = True  # told in the answer's head unless it is already out

    def _phase(self) -> str:
        """What the connection waits for: "idle" (a request), "head", "body" (the client's, not paused by the
        gateway, nor waiting to be told "100 Continue"), or "busy" (the gateway: an answer in progress, or reading
        paused)."""
        parsing = self._parsing
        if parsing is not None and not self._paused and (self._active is None or self._active is parsing):
            return "body" if b"expect" not in parsing.fields or self._continued is parsing else "busy"
        if self._active is not None or self._queue or self._paused:
            return "busy"
        return "head" if self._in_head else "idle"

    def sweep(self, now: float) -> None:
        """The timeout sweep's visit: a phase's time counts from the first sweep that saw it (a body's, from the
        last one that saw bytes arrive)."""
        server = self.server
        if self._write_paused_at is not None and now - self._write_paused_at > server.write_timeout:
            limit_reached(
                "write_timeout",
                f"closed the connection from {self.peer}: it read nothing of its answer for "
                f"{server.write_timeout:g} s (DAIS_GATEWAY__WRITE_TIMEOUT_SECONDS)",
            )
            self.abort()
            return
        phase = self._phase()
        seen = (phase, self._turn, self._reads if phase == "body" else 0)
        if seen != self._seen:
            self._seen, self._seen_at = seen, now
            return
        waited = now - self._seen_at
        if phase == "idle" and self._turn:
            if waited > server.idle_timeout:
                limit_reached(
                    "idle_timeout", f"closed an idle keep-alive connection from {self.peer}", level=logging.DEBUG
                )
                self.close()
        elif phase in ("idle", "head"):  # a new connection's first request counts from its opening
            if waited > server.header_timeout:
                self._refuse(
                    408,
                    f"the request head did not arrive within {server.header_timeout:g} s: send it at once",
                    limit="header_timeout",
                )
        elif phase == "body" and waited > server.body_timeout:
            self._refuse(
                408,
                f"the request body stalled: nothing arrived for {server.body_timeout:g} s; send it without pauses",
                limit="body_timeout",
            )

    def _refuse(self, status: int, message: str, *, limit: str | None = None, headers: Headers | None = None) -> None:
        """A request that cannot be parsed or is over a limit: answer and close. When it is not the one being
        answered, the answer in progress ends first; when its own answer has begun, that is cut."""
        if limit is not None:
            limit_reached(limit, f"answered {status} to {self.peer}: {message}")
        task = self._task
        if task is not None and not task.done():
            if self._parsing is None or self._parsing is not self._active:
                if self._parsing is not None and self._parsing.body is not None:
                    self._parsing.body.fail(ClientGone(message))
                self._close_after = True
                self.pause("refused")
                return
            self._task = None
            task.cancel()  # before it has sent anything upstream, when the request came in one read
            if self._framing:
                self.close()
                return
        self._active = self._active or Request("GET", "", "1.1", [], {}, self.peer)
        self._out = []
        self.extra = []
        self._close_after = True
        body = orjson.dumps({"error": message, "statusCode": status})
        self.send(status, [(b"content-type", b"application/json"), *(headers or ())], body)
        self.close()


def _streams(fields: dict[bytes, bytes]) -> bool:
    """Whether a request's body is handed over as it arrives (chunked, large, or waiting for 100 Continue)
    rather than whole once it has all arrived."""
    if b"transfer-encoding" in fields or fields.get(b"expect", b"").lower() == b"100-continue":
        return True
    try:
        return int(fields.get(b"content-length", b"0")) > WHOLE_BODY_BYTES
    except ValueError:
        return True


class _Refusal(Exception):
    def __init__(self, status: int, message: str, limit: str | None = None, headers: Headers | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.limit = limit
        self.headers = headers


_date_second = 0
_date_value = b""


def http_date() -> bytes:
    """The Date header's value, formatted at most once a second."""
    global _date_second, _date_value
    now = int(time.time())
    if now != _date_second:
        _date_second, _date_value = now, formatdate(now, usegmt=True).encode()
    return _date_value
