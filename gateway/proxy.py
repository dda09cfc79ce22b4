"""The request path: find the endpoint, check the caller, wake or hold on a cold start, forward, count.

``/{namespace}/{name}/{rest}`` (or ``{name}-{namespace}.{domain}/{rest}``) goes to ``/{rest}`` of one of the
endpoint's upstreams, with the query string kept byte for byte. Bodies stream both ways; every chunk the
engine sends is written to the client as it arrives, so server-sent events are never held back. Only the
path's first two segments choose the endpoint, and they are matched against the routing table as they are:
``..``, encoded slashes and backslashes are refused before any lookup, and no header but ``Host`` (with a
configured domain) takes part in routing.

Browsers (the web console's playground, any page of ``DAIS_GATEWAY__CORS_ORIGINS``) get CORS from the gateway
itself: a preflight is answered here, before any token check (a preflight carries none) and whether or not the
endpoint exists, and every answer to an allowed ``Origin`` (errors included, so a page can read why) carries
``Access-Control-Allow-Origin``; the engine's own CORS headers are never relayed. Credentials are never allowed:
the token is a header the page sends, not a cookie the browser attaches by itself.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import orjson

from core.domain.enums import EndpointType
from core.net import split_host_port
from core.settings import GatewaySettings
from gateway import metrics
from gateway.activity import Activity
from gateway.auth import Caller, Denial, Miss, TokenCache, decide
from gateway.hold import ColdStarts, HoldOutcome
from gateway.routing import Route, RoutingTable
from gateway.server import Body, BodyTooLarge, ClientGone, Connection, Request, http_date, limit_reached
from gateway.upstream import HOP_BY_HOP, UpstreamConnection, UpstreamError, UpstreamPool
from gateway.usage import UsageReader

_SEGMENT = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
SCALE_UP_HEADER = "X-Scale-Up-Timeout"

log = logging.getLogger("dais.gateway")


@dataclass  # not frozen: mypyc builds a frozen one through object.__setattr__, per request
class RequestTarget:
    namespace: str
    name: str
    rest: str  # the path sent upstream, starting with "/", still percent-encoded
    query: str


def parse_target(raw_path: str, host: str | None, domain: str | None) -> RequestTarget | str | None:
    """The endpoint a request names and the path to send it; a string says why the path is refused; None:
    not an endpoint path."""
    path, _, query = raw_path.partition("?")
    decoded = unquote(path) if "%" in path else path
    if "\\" in decoded or "\x00" in decoded or ("/." in decoded and any(s in ("..", ".") for s in decoded.split("/"))):
        return "the path may not contain '.' or '..' segments, backslashes or NUL"
    if domain and host:
        try:
            hostname = split_host_port(host)[0].lower()
        except ValueError:
            hostname = host.lower()  # not host:port: it matches no endpoint's host, the path still routes
        suffix = "." + domain.lower()
        if hostname.endswith(suffix):
            return RequestTarget("", hostname[: -len(suffix)], path or "/", query)  # split by the caller (see below)
    parts = path.split("/", 3)
    if len(parts) < 3 or parts[0] != "":
        return None
    namespace, name = parts[1], parts[2]
    if not _SEGMENT.match(namespace) or not _SEGMENT.match(name):
        return None  # no endpoint has such a name (encoded characters included): 404
    rest = "/" + parts[3] if len(parts) == 4 else "/"
    return RequestTarget(namespace, name, rest, query)


class Proxy:
    def __init__(
        self,
        settings: GatewaySettings,
        *,
        table: RoutingTable,
        tokens: TokenCache,
        activity: Activity,
        cold: ColdStarts,
        pool: UpstreamPool,
        internal: bool,
        own: Callable[[Request, Connection], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.table = table
        self.tokens = tokens
        self.activity = activity
        self.cold = cold
        self.pool = pool
        self.internal = internal
        self.own = own  # the gateway's own paths (/healthz, /metrics ...), tried for non-endpoint paths
        self.cors = Cors(settings.cors_origins) if settings.cors_origins else None
        self._hosts: dict[str, bytes] = {}
        self.outstanding: dict[str, int] = {}  # per upstream base URL, for least-outstanding balancing
        self._turn = 0

    # -- routing ----------------------------------------------------------------------------------------------

    def find(self, target: RequestTarget) -> Route | None:
        if target.namespace:
            return self.table.get(target.namespace, target.name)
        prefix = target.name  # host routing: "{name}-{namespace}", where both may contain dashes
        for cut in range(len(prefix)):
            if prefix[cut] == "-":
                route = self.table.get(prefix[cut + 1 :], prefix[:cut])
                if route is not None:
                    return route
        return None

    def pick(self, route: Route) -> str:
        """The upstream with the fewest requests outstanding; ties go round-robin."""
        upstreams = route.upstreams
        if len(upstreams) == 1:
            return upstreams[0]
        self._turn += 1
        start = self._turn % len(upstreams)
        best, best_count = upstreams[start], self.outstanding.get(upstreams[start], 0)
        for i in range(1, len(upstreams)):
            candidate = upstreams[(start + i) % len(upstreams)]
            count = self.outstanding.get(candidate, 0)
            if count < best_count:
                best, best_count = candidate, count
        return best

    # -- the handler ------------------------------------------------------------------------------------------

    def __call__(self, request: Request, client: Connection) -> Coroutine[Any, Any, None] | None:
        """Answers at once what needs no waiting (unknown endpoint, bad path, a denial from the token cache) and
        returns None; otherwise returns the coroutine that serves the request."""
        if self.cors is not None and b"origin" in request.fields and self.cors.apply(request, client):
            return None  # a preflight, answered
        target = parse_target(request.target, request.header(b"host"), self.settings.domain)
        if target is None:
            if self.own is not None and self.own(request, client):
                return None
            metrics.REJECTED.labels("not_found").inc()
            error(client, 404, "not found: endpoint URLs look like /{namespace}/{name}/...")
            return None
        if isinstance(target, str):
            metrics.REJECTED.labels("bad_path").inc()
            error(client, 400, target)
            return None
        route = self.find(target)
        if route is None and not self.table.loaded:
            metrics.REJECTED.labels("starting").inc()
            error(client, 503, "the gateway is starting: its routes are not read yet; retry", retry_after=1)
            return None
        if route is None or (route.private_service and not self.internal):
            metrics.REJECTED.labels("not_found").inc()
            where = f"{target.namespace}/{target.name}" if target.namespace else target.name
            error(client, 404, f"endpoint {where} not found: check the namespace and name (GET /v2/endpoint/...)")
            return None
        if route.access is not EndpointType.PUBLIC:  # a public endpoint ignores tokens: no lookup at all
            caller = self.tokens.cached(request.header(b"authorization"))
            if caller is Miss.MISS:
                return self._check_then_forward(route, target, request, client)
            if self._denied(route, caller, client):
                return None
        if self._too_large(request, client):
            return None
        return self._forward(route, target, request, client)

    async def _check_then_forward(
        self, route: Route, target: RequestTarget, request: Request, client: Connection
    ) -> None:
        caller = await self.tokens.caller(request.header(b"authorization"))
        if not self._denied(route, caller, client) and not self._too_large(request, client):
            await self._forward(route, target, request, client)

    def _denied(self, route: Route, caller: Caller | Denial | None, client: Connection) -> bool:
        denial = decide(route, caller, _utcnow())
        if denial is None:
            return False
        metrics.REJECTED.labels("denied").inc()
        error(client, denial.status, denial.message, retry_after=denial.retry_after)
        return True

    def _too_large(self, request: Request, client: Connection) -> bool:
        if request.body is None or _declared_length(request) <= self.settings.max_body_bytes:
            return False
        self._refuse_too_large(client)
        return True

    async def _cold(
        self, route: Route, request: Request, client: Connection, avoid: frozenset[str] = frozenset()
    ) -> Route | None:
        """The route once it serves (without the upstreams in ``avoid``), or None when the request was answered
        here."""
        if route.paused:
            metrics.REJECTED.labels("paused").inc()
            error(client, 503, f"endpoint {route.label} is paused: resume it (POST .../resume) to serve requests")
            return None
        self.cold.wake(route)
        wait = request.header(b"x-scale-up-timeout")
        if wait is None:
            metrics.REJECTED.labels("cold").inc()
            self._scaling_up(client, route, "retry later, or send 'X-Scale-Up-Timeout: <seconds>' to wait for it")
            return None
        try:
            seconds = float(wait)
            if not seconds > 0:
                raise ValueError
        except ValueError:
            metrics.REJECTED.labels("bad_request").inc()
            error(client, 400, f"{SCALE_UP_HEADER} must be a positive number of seconds, got {wait!r}")
            return None
        outcome = await self.cold.hold(route, min(seconds, self.settings.max_scale_up_timeout_seconds), avoid)
        if isinstance(outcome, Route):
            return outcome
        metrics.REJECTED.labels(f"hold_{outcome.value}").inc()
        if outcome is HoldOutcome.FULL:
            self._scaling_up(client, route, f"too many requests are already waiting ({self.cold.cap}); retry later")
        elif outcome is HoldOutcome.PAUSED:
            error(client, 503, f"endpoint {route.label} was paused while the request waited")
        elif outcome is HoldOutcome.GONE:
            error(client, 404, f"endpoint {route.label} was deleted while the request waited")
        else:
            self._scaling_up(client, route, f"no replica became ready within {SCALE_UP_HEADER}")
        return None

    def _scaling_up(self, client: Connection, route: Route, advice: str) -> None:
        current = self.table.by_id(route.endpoint_id) or route
        estimate = current.startup_seconds or self.settings.cold_start_estimate_seconds
        retry = max(1, round(estimate))
        doing = f"; {current.message}" if current.message and current.state in ("initializing", "pending") else ""
        message = f"endpoint {route.label} is scaling up (about {retry} s{doing}): {advice}"
        error(client, 503, message, retry_after=retry)

    async def _forward(self, route: Route, target: RequestTarget, request: Request, client: Connection) -> None:
        """Holds the request through a cold start when asked to, then sends it to a replica and relays the
        answer. The request counts as pending until the answer's status is known. One coroutine from start to
        end: each level of awaiting costs on every request."""
        pending = _Pending(self.activity, route, metrics.series(route.label))
        figures = pending.series
        conn: UpstreamConnection | None = None
        pump: asyncio.Task[str | None] | None = None
        upstream = ""
        try:
            if not route.serving:
                ready = await self._cold(route, request, client)
                if ready is None:
                    return
                route = ready
            path = target.rest
            if path == "/" and request.method == "GET":  # older clients probe the bare URL: answer as the health route
                path = "/" + route.health_route.lstrip("/")
            body = request.body
            try:
                whole = body.whole() if body is not None else b""
            except BodyTooLarge:
                return self._refuse_too_large(client)
            upstream = self.pick(route)
            self.outstanding[upstream] = self.outstanding.get(upstream, 0) + 1
            started = time.perf_counter()
            refused: set[str] = set()
            while True:  # a replica that refuses the connection never saw the request: another one may take it
                try:
                    first = self.pool.take(upstream) or await self.pool.connect(upstream)
                    break
                except UpstreamError as exc:
                    if exc.kind != "connect" or len(refused) >= REROUTES:
                        raise
                    refused.add(upstream)
                    current = self.table.by_id(route.endpoint_id) or route
                    usable = tuple(u for u in current.upstreams if u not in refused)
                    if current.serving and usable:
                        route = replace(current, upstreams=usable)
                    elif current.serving and request.header(b"x-scale-up-timeout") is None:
                        raise  # as far as anyone knows it serves: the refusal is the answer (503, retry)
                    else:  # stopped, or stopping while the table has not heard yet: a request that waits, waits
                        ready = await self._cold(current, request, client, frozenset(refused))
                        if ready is None:
                            return
                        route = ready
                    self._done_with(upstream)
                    upstream = self.pick(route)
                    self.outstanding[upstream] = self.outstanding.get(upstream, 0) + 1
            head = self._upstream_head(request, upstream, path, target.query)
            for attempt in (1, 2):
                conn = live = first if attempt == 1 else self.pool.take(upstream) or await self.pool.connect(upstream)
                pump = _send(live, request, head, whole)
                try:
                    answer = await live.response()
                    break
                except UpstreamError as exc:
                    # A kept-alive connection the replica closed as it was picked: once more on a new one, for a
                    # request that is safe to repeat and still whole in hand.
                    if attempt == 2 or not live.reused or exc.kind != "reset" or whole is None:
                        raise
                    if request.method not in _IDEMPOTENT:
                        raise
                    live.close()
            pending.answered()
            usage = UsageReader(answer.content_type.decode("latin-1")) if answer.status < 300 else None
            tap = usage if usage is not None and usage.wanted else None
            client.begin(answer.status, answer.reason, answer.headers, length=answer.length, bodiless=answer.bodiless)
            try:
                done = live.relay(client, tap)
                if done is not None:
                    await done
            except UpstreamError as exc:
                figures.failures += 1
                log.warning("endpoint %s: %s mid-answer; closing the client connection", route.label, exc)
                client.close()  # the answer ends visibly cut (no final chunk), not looking complete
                return
            client.flush()
            if pump is None or pump.done():
                self.pool.release(live)  # else: answered before the whole body was sent, it closes below
                conn = None
            self._counted(figures, answer.status, started, tap)
            if answer.status not in SHED:
                self.activity.completed(route.endpoint_id)
        except UpstreamError as exc:
            figures.failures += 1
            if pump is not None and pump.done() and not pump.cancelled() and pump.result() == "too_large":
                return self._refuse_too_large(client)
            if exc.kind == "timeout":
                why = "the replica did not answer in time: retry, or raise the timeout"
                return error(client, 504, f"endpoint {route.label}: {why}")
            if exc.kind == "head_size":
                limit_reached(
                    "upstream_head_size",
                    f"endpoint {route.label}: answered 502: {exc} (DAIS_GATEWAY__MAX_UPSTREAM_HEAD_BYTES)",
                )
                return error(client, 502, f"endpoint {route.label}: {exc}, more than the gateway relays")
            if exc.kind in ("connect", "reset"):
                # No byte of an answer came back: the replica was down or went down (a restart, a crash). As
                # Envoy does, that is a 503 the client may retry, not a 502, which says the replica answered wrong.
                why = f"its replica refused or dropped the connection before answering ({exc}): retry"
                return error(client, 503, f"endpoint {route.label}: {why}", retry_after=UNANSWERED_RETRY_AFTER)
            return error(client, 502, f"endpoint {route.label}: {exc}")  # the replica answered, wrongly
        finally:
            pending.answered()
            if conn is not None:
                conn.close()
            if pump is not None and not pump.done():
                pump.cancel()
            if upstream:
                self._done_with(upstream)

    def _done_with(self, upstream: str) -> None:
        left = self.outstanding[upstream] - 1
        if left:
            self.outstanding[upstream] = left
        else:  # pod addresses come and go: keep only those with requests in flight
            del self.outstanding[upstream]

    def _refuse_too_large(self, client: Connection) -> None:
        metrics.REJECTED.labels("too_large").inc()
        message = f"request body over {self.settings.max_body_bytes} bytes: send a smaller one"
        limit_reached("body_size", f"answered 413 to {client.peer}: {message}")
        error(client, 413, message)

    @staticmethod
    def _counted(figures: metrics.Series, status: int, started: float, usage: UsageReader | None) -> None:
        figures.answered(status, (time.perf_counter() - started) * 1000)
        if usage is not None:
            tokens = usage.tokens()
            figures.prompt += tokens.prompt
            figures.completion += tokens.completion

    def _upstream_head(self, request: Request, upstream: str, path: str, query: str) -> bytes:
        """Request line and headers for the replica, without the framing header and the blank line."""
        fields = request.fields
        dropped = _DROPPED if self.settings.forward_authorization else _DROPPED_AUTH
        listed = fields.get(b"connection")
        if listed:
            dropped = dropped | {t.strip().lower() for t in listed.split(b",")}
        out = [
            b"%s %s%s HTTP/1.1\r\nhost: %s\r\n"
            % (
                request.method.encode(),
                path.encode("latin-1"),
                b"?" + query.encode("latin-1") if query else b"",
                self._host(upstream),
            )
        ]
        for name, value in request.headers:
            if name not in dropped:
                out.append(b"%s: %s\r\n" % (name, value))
        prior = fields.get(b"x-forwarded-for")
        peer = request.peer.encode()
        out.append(b"x-forwarded-for: %s\r\nx-forwarded-proto: http\r\n" % (prior + b", " + peer if prior else peer))
        if b"x-request-id" not in fields:
            out.append(b"x-request-id: %s\r\n" % (fields.get(b"x-amzn-trace-id") or _request_id()))
        return b"".join(out)

    def _host(self, upstream: str) -> bytes:
        found = self._hosts.get(upstream)
        if found is None:
            found = self._hosts[upstream] = upstream.split("://", 1)[-1].rstrip("/").encode()
        return found


def error(client: Connection, status: int, message: str, *, retry_after: int | None = None) -> None:
    """Answers with the API's error shape: ``{"error": ..., "statusCode": ...}``."""
    headers = [(b"content-type", b"application/json"), (b"date", http_date())]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    client.send(status, headers, orjson.dumps({"error": message, "statusCode": status}))


# The caller's framing and hop-by-hop headers, Host (the replica's is sent), the gateway's own header, and the
# forwarding headers the gateway writes itself.
_DROPPED = frozenset(
    HOP_BY_HOP
    | {b"host", b"content-length", b"expect", b"x-scale-up-timeout", b"x-forwarded-for", b"x-forwarded-proto"}
)
_DROPPED_AUTH = _DROPPED | {b"authorization"}
_HEADER_NAMES = re.compile(rb"^[A-Za-z0-9!#$%&'*+.^_`|~-]+(?:[ \t]*,[ \t]*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*$")


class Cors:
    """Which browser pages may read endpoints' answers: ``origins`` (``Origin`` values, or ``*`` for any)."""

    METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE"
    MAX_AGE = b"600"  # seconds a browser may reuse a preflight's answer

    def __init__(self, origins: list[str]) -> None:
        self.any = "*" in origins
        self.origins = frozenset(o.strip().rstrip("/").encode() for o in origins if o != "*")

    def allowed(self, origin: bytes) -> bytes | None:
        """The ``Access-Control-Allow-Origin`` value for a request from ``origin``; None: not allowed."""
        if self.any:
            return b"*"
        return origin if origin in self.origins else None

    def apply(self, request: Request, client: Connection) -> bool:
        """For a request with an ``Origin``: answers a preflight (True), or marks the answer to come with the CORS
        headers (False). A request from an origin not allowed gets none and goes on as any other."""
        fields = request.fields
        allow = self.allowed(fields[b"origin"])
        if allow is None:
            return False
        if request.method == "OPTIONS" and b"access-control-request-method" in fields:
            headers = [
                (b"access-control-allow-origin", allow),
                (b"access-control-allow-methods", self.METHODS),
                (b"access-control-max-age", self.MAX_AGE),
                (b"date", http_date()),
            ]
            asked = fields.get(b"access-control-request-headers", b"").strip()
            if asked and _HEADER_NAMES.match(asked):  # any header: Authorization, X-Scale-Up-Timeout, ...
                headers.append((b"access-control-allow-headers", asked))
            if not self.any:
                headers.append((b"vary", b"origin, access-control-request-method, access-control-request-headers"))
            client.begin(204, None, headers, length=None, bodiless=True)
            return True
        client.extra = [(b"access-control-allow-origin", allow), (b"access-control-expose-headers", b"*")]
        if not self.any:
            client.extra.append((b"vary", b"origin"))
        return False


def _declared_length(request: Request) -> int:
    raw = request.fields.get(b"content-length")
    try:
        return int(raw) if raw is not None else 0
    except ValueError:
        return 0


def _send(
    conn: UpstreamConnection, request: Request, head: bytes, whole: bytes | None
) -> asyncio.Task[str | None] | None:
    """Sends the request: whole when its body has all arrived; else its head, and a task that streams the body
    in the client's framing (Content-Length kept, or chunked)."""
    if whole is not None:
        conn.send(b"%scontent-length: %d\r\n\r\n%s" % (head, len(whole), whole), method=request.method)
        return None
    assert request.body is not None
    length = request.fields.get(b"content-length")
    framing = b"content-length: %s\r\n\r\n" % length if length is not None else b"transfer-encoding: chunked\r\n\r\n"
    conn.send(head + framing, method=request.method)
    return asyncio.get_running_loop().create_task(_pump(request.body, conn, chunked=length is None), name="dais-body")


async def _pump(body: Body, conn: UpstreamConnection, *, chunked: bool) -> str | None:
    """A streamed request body to the replica, as it arrives from the client. When it cannot be sent whole
    (over the limit, the client gone, the replica gone) the replica's connection is closed, which fails the
    exchange; the result says why, for the answer: "too_large", or None."""
    try:
        async for chunk in body:
            conn.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            await conn.drain()
        if chunked:
            conn.write(b"0\r\n\r\n")
    except BodyTooLarge:
        conn.close()
        return "too_large"
    except (ClientGone, UpstreamError):
        conn.close()
    return None


class _Pending:
    """A request counts as pending (for the autoscaler and ``dais_gateway_pending``) until it has a status."""

    __slots__ = ("activity", "endpoint_id", "series")

    def __init__(self, activity: Activity, route: Route, series: metrics.Series) -> None:
        self.activity = activity
        self.endpoint_id: str | None = route.endpoint_id
        self.series = series
        activity.started(route.endpoint_id)
        series.pending += 1

    def answered(self) -> None:
        if self.endpoint_id is not None:
            self.activity.finished(self.endpoint_id)
            self.series.pending -= 1
            self.endpoint_id = None


SHED = frozenset({429, 503})  # a replica turning work away: not a completion, for the autoscaler's rates
REROUTES = 3  # replicas tried after a refused connection, before the request fails with 503
UNANSWERED_RETRY_AFTER = 1  # seconds; a replica that refused or dropped a connection is restarting, or another serves

_ID_PREFIX = os.urandom(6).hex().encode()
_ID_COUNTER = itertools.count()


def _request_id() -> bytes:
    """Unique per process run and cheap (uuid4 reads the kernel's random source on every call)."""
    return b"%s%012x" % (_ID_PREFIX, next(_ID_COUNTER))


def _utcnow() -> datetime:
    return datetime.now(UTC)
