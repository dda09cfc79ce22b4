"""The gateway's HTTP/1.1 client: a pool of keep-alive connections to upstream replicas, on httptools.

One request at a time per connection. ``UpstreamPool.take`` hands out an idle connection (the most recently
used first, so a quiet endpoint keeps few warm) or ``connect`` opens one. The exchange:

    conn.send(head_and_body)              # or send(head), then write(...) the body as it streams
    answer = await conn.response()        # status, reason, headers
    await conn.relay(client, usage)       # every read passed to the client as it arrives (None: already done)
    pool.release(conn)                    # back to the pool when the answer allows keep-alive

Errors are ``UpstreamError`` with a kind: ``connect`` (refused, unreachable, connect timeout), ``timeout`` (no
byte for ``read_timeout`` seconds while an answer is awaited), ``reset`` (the connection ended early),
``protocol`` (not HTTP), ``head_size`` (an answer's head over ``max_head_bytes``: engine images are user code).
The read timeout is checked by one sweep for all connections, not a timer per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

import httptools

from core.net import split_host_port

if TYPE_CHECKING:
    from gateway.server import Headers

# An idle pooled connection is not used after this long: uvicorn-based engines (vLLM, TEI's Python images)
# close theirs after 5 s, and a connection picked as the replica closes it fails its request.
IDLE_SECONDS = 4.0


class UpstreamError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Sink(Protocol):
    """Where a relayed body goes: the client's connection (``gateway.server.Connection``)."""

    on_write_pause: Callable[[bool], None] | None

    def write(self, chunk: bytes) -> None: ...

    def end(self) -> None: ...

    def flush(self) -> None: ...


class Tap(Protocol):
    """Sees every chunk of a relayed body (token counting)."""

    def feed(self, chunk: bytes) -> None: ...


# Not relayed to the client: hop-by-hop headers, the framing (the gateway frames the answer itself), and CORS
# (the gateway's own, see gateway.proxy.Cors).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
_NOT_RELAYED = HOP_BY_HOP | {b"content-length"}


class Answer:
    """An answer's head. ``headers``: those to relay to the client (names lower-case), sorted out as they were
    parsed; ``content_type``: its value, "" without one."""

    __slots__ = ("bodiless", "content_type", "headers", "keep_alive", "length", "reason", "status")

    def __init__(
        self,
        status: int,
        reason: bytes,
        headers: Headers,
        content_type: bytes,
        length: int | None,
        bodiless: bool,
        keep_alive: bool,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content_type = content_type
        self.length = length
        self.bodiless = bodiless
        self.keep_alive = keep_alive


class _HeadDone(Exception):
    """Stops the parser after the head of an answer to HEAD (llhttp would otherwise wait for its body)."""


class _HeadTooLarge(Exception):
    pass


class UpstreamConnection(asyncio.Protocol):
    def __init__(self, pool: UpstreamPool, key: str) -> None:
        self.pool = pool
        self.key = key
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.reads = 0  # bumped on every read: the timeout sweep's sign of life
        self.silent_ticks = 0
        self._method = ""
        self._reason = b""
        self._headers: Headers = []  # those to relay
        self._length = b""  # the framing headers' values, "" when absent
        self._encoding = b""
        self._content_type = b""
        self._listed = b""  # Connection's value: more hop-by-hop headers
        self._head_bytes = 0  # the answer's head as parsed, and as read while it is incomplete
        self._head_raw = 0
        self._interim = False
        self._answer: Answer | None = None
        self._until_close = False
        self._head: asyncio.Future[Answer] | None = None
        self._done: asyncio.Future[None] | None = None
        self._complete = False
        self._error: UpstreamError | None = None
        self._chunks: list[bytes] = []
        self._sink: Sink | None = None
        self._tap: Tap | None = None
        self.reading_paused = False  # by a slow client: silence then is not the replica's
        self._drained: asyncio.Future[None] | None = None
        self._write_paused = False

    # -- the exchange -----------------------------------------------------------------------------------------

    def send(self, data: bytes, *, method: str) -> None:
        """Starts a request: its head (and its whole body, when known)."""
        self._method = method
        self._reset_head()
        self._answer = None
        self._complete = False
        self._error = None
        self._chunks = []
        self._sink = None
        self._tap = None
        self._head = self.loop.create_future()
        self.silent_ticks = 0
        self.pool.busy.add(self)
        assert self.transport is not None
        self.transport.write(data)

    def write(self, data: bytes) -> None:
        """More of a streamed request body (already framed)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        if self._write_paused and not self.closed:
            self._drained = self.loop.create_future()
            try:
                await self._drained
            finally:
                self._drained = None
        if self.closed:
            raise self._error or UpstreamError("reset", "the connection closed while the request was sent")

    def response(self) -> asyncio.Future[Answer]:
        """The answer's head, once it has arrived (a future, not a coroutine: one step less per request)."""
        assert self._head is not None
        return self._head

    def relay(self, sink: Sink, tap: Tap | None) -> asyncio.Future[None] | None:
        """Passes the body to ``sink`` as it arrives; the future ends with it (None: it had all arrived)."""
        for chunk in self._chunks:
            if tap is not None:
                tap.feed(chunk)
            sink.write(chunk)
        self._chunks = []
        if self._complete:
            sink.end()
            sink.flush()
            return None
        sink.flush()
        if self._error is not None:
            raise self._error
        self._sink = sink
        self._tap = tap
        sink.on_write_pause = self._follow_client
        self._done = self.loop.create_future()
        return self._done

    @property
    def reusable(self) -> bool:
        return self._complete and not self.closed and self._answer is not None and self._answer.keep_alive

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # -- asyncio.Protocol -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self.reads += 1
        try:
            self.parser.feed_data(data)
            if self._answer is None and self._head is not None:  # a header line that never ends: count what came
                self._head_raw += len(data)
                if self._head_raw > self.pool.max_head_bytes:
                    raise _HeadTooLarge
        except (httptools.HttpParserCallbackError, _HeadTooLarge) as exc:
            cause = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else exc
            if isinstance(cause, _HeadDone):
                self.parser = httptools.HttpResponseParser(self)
                self.on_message_complete()
            elif isinstance(cause, _HeadTooLarge):
                limit = self.pool.max_head_bytes
                self._fail(UpstreamError("head_size", f"the replica's response headers are over {limit} bytes"))
                self.close()
            else:
                self._fail(UpstreamError("protocol", f"the replica's answer could not be relayed: {cause}"))
                self.close()
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError("protocol", f"the replica did not answer in HTTP/1.1 ({exc})"))
            self.close()
        if self._sink is not None:
            self._sink.flush()

    def eof_received(self) -> bool | None:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if self._complete or self._head is None:
            return
        if self._until_close and self._answer is not None:  # a body framed by the end of the connection
            self.on_message_complete()
            return
        why = f"{exc}" if exc else "the connection closed"
        self._fail(UpstreamError("reset", why))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # -- httptools callbacks ----------------------------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self._reason += reason
        self._head_bytes += len(reason)
        if self._head_bytes > self.pool.max_head_bytes:
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.pool.max_head_bytes:
            raise _HeadTooLarge
        name = name.lower()
        if name not in _NOT_RELAYED:
            if name == b"content-type":
                self._content_type = value
            elif name.startswith(b"access-control-"):
                return
            self._headers.append((name, value))
        elif name == b"content-length":
            self._length = value
        elif name == b"transfer-encoding":
            self._encoding = value
        elif name == b"connection":
            self._listed = self._listed + b"," + value if self._listed else value

    def _reset_head(self) -> None:
        self._reason = b""
        self._headers = []
        self._length = self._encoding = self._content_type = self._listed = b""
        self._head_bytes = self._head_raw = 0

    def on_headers_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()
        if status < 200:  # 100 Continue and other interim answers are not passed on
            self._interim = True
            self._reset_head()
            return
        chunked = self._encoding.lower().find(b"chunked") >= 0  # not `in`: see usage.UsageReader.tokens
        length = _length(self._length)
        headers = self._headers
        if self._listed:  # Connection: names more headers that are this hop's only
            listed = {token.strip().lower() for token in self._listed.split(b",")}
            headers = [(n, v) for n, v in headers if n not in listed]
        bodiless = self._method == "HEAD" or status in (204, 304)
        if chunked:
            length = None
        self._until_close = not chunked and length is None and not bodiless
        keep_alive = parser.should_keep_alive() and not self._until_close
        self._answer = Answer(status, self._reason, headers, self._content_type, length, bodiless, keep_alive)
        head = self._head
        if head is not None and not head.done():
            head.set_result(self._answer)
        if self._method == "HEAD":
            raise _HeadDone

    def on_body(self, chunk: bytes) -> None:
        sink = self._sink
        if sink is None:
            self._chunks.append(chunk)
            return
        if self._tap is not None:
            self._tap.feed(chunk)
        sink.write(chunk)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._complete = True
        self.pool.busy.discard(self)
        sink = self._sink
        if sink is not None:
            sink.end()
            sink.flush()
            sink.on_write_pause = None
            self._sink = None
        done = self._done
        if done is not None and not done.done():
            done.set_result(None)

    # -- failures and flow ------------------------------------------------------------------------------------

    def _fail(self, error: UpstreamError) -> None:
        self.pool.busy.discard(self)
        if self._error is not None or self._complete:
            return
        self._error = error
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        elif self._done is not None and not self._done.done():
            self._done.set_exception(error)
        if self._sink is not None:
            self._sink.on_write_pause = None
            self._sink = None

    def timed_out(self) -> None:
        self._fail(UpstreamError("timeout", "no answer within the read timeout"))
        self.close()

    def _follow_client(self, paused: bool) -> None:
        """The client reads slower than the replica writes: stop reading the replica until it catches up."""
        if self.transport is None or self.transport.is_closing():
            return
        self.reading_paused = paused
        if paused:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()


def _length(raw: bytes) -> int | None:
    """Content-Length's value (llhttp has refused a malformed one already)."""
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


class UpstreamPool:
    def __init__(self, *, connect_timeout: float, read_timeout: float, max_head_bytes: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_head_bytes = max_head_bytes
        self.tick = min(1.0, read_timeout / 4)
        self.idle: dict[str, list[UpstreamConnection]] = {}
        self.busy: set[UpstreamConnection] = set()
        self._addresses: dict[str, tuple[str, int]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def take(self, base: str) -> UpstreamConnection | None:
        """An idle connection to ``base`` (``http://host:port``), or None."""
        stack = self.idle.get(base)
        while stack:
            conn = stack.pop()
            if conn.closed:
                continue
            if self.loop.time() - conn.idle_since > IDLE_SECONDS:
                conn.close()
                continue
            conn.reused = True
            return conn
        return None

    async def connect(self, base: str) -> UpstreamConnection:
        host, port = self._address(base)
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: UpstreamConnection(self, base), host, port),
                self.connect_timeout,
            )
        except TimeoutError:
            raise UpstreamError("connect", f"no connection within {self.connect_timeout:g} s") from None
        except OSError as exc:
            raise UpstreamError("connect", exc.strerror or str(exc)) from None
        self._ensure_sweeper()
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        if not conn.reusable:
            conn.close()
            return
        conn.idle_since = self.loop.time()
        self.idle.setdefault(conn.key, []).append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        self.busy.discard(conn)
        stack = self.idle.get(conn.key)
        if stack is not None and conn in stack:
            stack.remove(conn)
            if not stack:
                del self.idle[conn.key]

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for stack in list(self.idle.values()):
            for conn in list(stack):
                conn.close()
        for conn in list(self.busy):
            conn.close()

    def _address(self, base: str) -> tuple[str, int]:
        found = self._addresses.get(base)
        if found is None:
            host, port = split_host_port(base.split("://", 1)[-1].rstrip("/"), default_port=80)
            found = self._addresses[base] = (host, port or 80)
        return found

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = self.loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        """Read timeouts of answers in progress, and idle connections past their time."""
        limit = max(1, round(self.read_timeout / self.tick))
        seen: dict[UpstreamConnection, int] = {}
        while True:
            await asyncio.sleep(self.tick)
            now = self.loop.time()
            for conn in list(self.busy):
                if conn.reading_paused or seen.get(conn) != conn.reads:
                    conn.silent_ticks = 0
                else:
                    conn.silent_ticks += 1
                    if conn.silent_ticks >= limit:
                        conn.timed_out()
            seen = {conn: conn.reads for conn in self.busy}
            for stack in list(self.idle.values()):
                for conn in [c for c in stack if now - c.idle_since > IDLE_SECONDS]:
                    conn.close()
