"""The request path: find the endpoint, check the caller, wake or hold on a cold start, forward, count.

``/{namespace}/{name}/{rest}`` (or ``{name}-{namespace}.{domain}/{rest}``) goes to ``/{rest}`` of one of the
endpoint's upstreams, with the query string kept byte for byte. Bodies stream both ways; every chunk the
engine sends is written to the client as it arrives, so server-sent events are never held back. Only the
path's first two segments choose the endpoint, and they are matched against the routing table as they are:
``..``, encoded slashes and backslashes are refused before any lookup, and no header but ``Host`` (with a
configured domain) takes part in routing.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from api.domain.enums import EndpointType
from api.settings import GatewaySettings
from gateway import metrics
from gateway.activity import Activity
from gateway.auth import TokenCache, decide
from gateway.hold import ColdStarts, HoldOutcome
from gateway.routing import Route, RoutingTable
from gateway.usage import UsageReader

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_SEGMENT = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_READ_WHOLE = 256 << 10  # bodies up to this size are read at once (faster); larger ones stream
SCALE_UP_HEADER = "X-Scale-Up-Timeout"

log = logging.getLogger("dais.gateway")


def error(status: int, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    body = orjson.dumps({"error": message, "statusCode": status})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


@dataclass(frozen=True, slots=True)
class Target:
    namespace: str
    name: str
    rest: str  # the path sent upstream, starting with "/", still percent-encoded
    query: str


def parse_target(raw_path: str, host: str | None, domain: str | None) -> Target | str | None:
    """The endpoint a request names and the path to send it; a string says why the path is refused; None:
    not an endpoint path."""
    path, _, query = raw_path.partition("?")
    decoded = unquote(path)
    if "\\" in decoded or "\x00" in decoded or any(s in ("..", ".") for s in decoded.split("/")):
        return "the path may not contain '.' or '..' segments, backslashes or NUL"
    if domain and host:
        hostname = host.rsplit(":", 1)[0].lower() if not host.endswith("]") else host.lower()
        suffix = "." + domain.lower()
        if hostname.endswith(suffix):
            return Target("", hostname[: -len(suffix)], path or "/", query)  # split by the caller (see below)
    parts = path.split("/", 3)
    if len(parts) < 3 or parts[0] != "":
        return None
    namespace, name = parts[1], parts[2]
    if not _SEGMENT.match(namespace) or not _SEGMENT.match(name):
        return None  # no endpoint has such a name (encoded characters included): 404
    rest = "/" + parts[3] if len(parts) == 4 else "/"
    return Target(namespace, name, rest, query)


class Proxy:
    def __init__(
        self,
        settings: GatewaySettings,
        *,
        table: RoutingTable,
        tokens: TokenCache,
        activity: Activity,
        cold: ColdStarts,
        client: aiohttp.ClientSession,
        internal: bool,
    ) -> None:
        self.settings = settings
        self.table = table
        self.tokens = tokens
        self.activity = activity
        self.cold = cold
        self.client = client
        self.internal = internal
        self.outstanding: dict[str, int] = {}  # per upstream base URL, for least-outstanding balancing
        self._turn = 0

    # -- routing ----------------------------------------------------------------------------------------------

    def find(self, target: Target) -> Route | None:
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

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        target = parse_target(request.raw_path, request.headers.get("Host"), self.settings.domain)
        if target is None:
            metrics.REJECTED.labels("not_found").inc()
            return error(404, "not found: endpoint URLs look like /{namespace}/{name}/...")
        if isinstance(target, str):
            metrics.REJECTED.labels("bad_path").inc()
            return error(400, target)
        route = self.find(target)
        if route is None or (route.private_service and not self.internal):
            metrics.REJECTED.labels("not_found").inc()
            where = f"{target.namespace}/{target.name}" if target.namespace else target.name
            return error(404, f"endpoint {where} not found: check the namespace and name (GET /v2/endpoint/...)")
        if route.access is not EndpointType.PUBLIC:  # a public endpoint ignores tokens: no lookup at all
            denial = decide(route, await self.tokens.caller(request.headers.get("Authorization")), _utcnow())
            if denial is not None:
                metrics.REJECTED.labels("denied").inc()
                return error(denial.status, denial.message)
        length = request.content_length
        if length is not None and length > self.settings.max_body_bytes:
            metrics.REJECTED.labels("too_large").inc()
            return error(413, f"request body over {self.settings.max_body_bytes} bytes: send a smaller one")

        pending = _Pending(self.activity, route, metrics.series(route.label))
        try:
            if not route.serving:
                ready = await self._cold(route, request)
                if isinstance(ready, web.Response):
                    return ready
                route = ready
            return await self._forward(route, target, request, pending)
        finally:
            pending.answered()

    async def _cold(self, route: Route, request: web.BaseRequest) -> Route | web.Response:
        if route.paused:
            metrics.REJECTED.labels("paused").inc()
            return error(503, f"endpoint {route.label} is paused: resume it (POST .../resume) to serve requests")
        self.cold.wake(route)
        wait = request.headers.get(SCALE_UP_HEADER)
        if wait is None:
            metrics.REJECTED.labels("cold").inc()
            return self._scaling_up(route, "retry later, or send 'X-Scale-Up-Timeout: <seconds>' to wait for it")
        try:
            seconds = float(wait)
            if not seconds > 0:
                raise ValueError
        except ValueError:
            metrics.REJECTED.labels("bad_request").inc()
            return error(400, f"{SCALE_UP_HEADER} must be a positive number of seconds, got {wait!r}")
        outcome = await self.cold.hold(route, min(seconds, self.settings.max_scale_up_timeout_seconds))
        if isinstance(outcome, Route):
            return outcome
        metrics.REJECTED.labels(f"hold_{outcome.value}").inc()
        if outcome is HoldOutcome.FULL:
            return self._scaling_up(route, f"too many requests are already waiting ({self.cold.cap}); retry later")
        if outcome is HoldOutcome.PAUSED:
            return error(503, f"endpoint {route.label} was paused while the request waited")
        if outcome is HoldOutcome.GONE:
            return error(404, f"endpoint {route.label} was deleted while the request waited")
        return self._scaling_up(route, f"no replica became ready within {SCALE_UP_HEADER}")

    def _scaling_up(self, route: Route, advice: str) -> web.Response:
        current = self.table.by_id(route.endpoint_id) or route
        estimate = current.startup_seconds or self.settings.cold_start_estimate_seconds
        retry = max(1, round(estimate))
        return error(
            503,
            f"endpoint {route.label} is scaling up (about {retry} s): {advice}",
            headers={"Retry-After": str(retry)},
        )

    async def _forward(
        self, route: Route, target: Target, request: web.BaseRequest, pending: _Pending
    ) -> web.StreamResponse:
        path = target.rest
        if path == "/" and request.method == "GET":  # older clients probe the bare URL: answer as the health route
            path = "/" + route.health_route.lstrip("/")
        upstream = self.pick(route)
        url = URL(upstream + path + ("?" + target.query if target.query else ""), encoded=True)
        headers = self._upstream_headers(request)
        body: bytes | AsyncIterable[bytes] | None = None
        limited: _LimitedBody | None = None
        if request.body_exists:
            length = request.content_length
            if length is not None and length <= _READ_WHOLE:
                body = await request.read()
            else:
                body = limited = _LimitedBody(request, self.settings.max_body_bytes)
        label = route.label
        figures = pending.series
        self.outstanding[upstream] = self.outstanding.get(upstream, 0) + 1
        started = time.perf_counter()
        response: web.StreamResponse | None = None
        try:
            async with self.client.request(
                request.method, url, headers=headers, data=body, allow_redirects=False
            ) as answer:
                pending.answered()
                usage = UsageReader(answer.headers.get("Content-Type", "")) if answer.status < 300 else None
                length = answer.content_length
                small = length is not None and length <= _READ_WHOLE and request.method != "HEAD"
                if small and not (usage is not None and usage.stream):
                    # A small, whole answer: one write of headers and body (aiohttp sends a streamed
                    # response's headers on their own, a syscall that showed in the profile).
                    whole = await answer.read()
                    response = web.Response(status=answer.status, reason=answer.reason, body=whole)
                    _copy_headers(answer.headers, response, skip=_LENGTH)
                    if usage is not None and usage.wanted:
                        usage.feed(whole)
                    return self._counted(figures, answer.status, started, usage, response)
                response = web.StreamResponse(status=answer.status, reason=answer.reason)
                _copy_headers(answer.headers, response, skip=HOP_BY_HOP)
                try:
                    await response.prepare(request)
                    async for chunk in answer.content.iter_any():
                        if usage is not None and usage.wanted:
                            usage.feed(chunk)
                        await response.write(chunk)
                    await response.write_eof()
                except ConnectionResetError:  # the client went away mid-answer: the upstream call closes below
                    usage = None
        except TimeoutError:  # aiohttp's connect and read timeouts are TimeoutErrors (and connection errors)
            figures.failures.inc()
            if response is not None and response.prepared:
                return _cut(request, response, label, "the replica went silent mid-answer")
            return error(504, f"endpoint {label}: the replica did not answer in time: retry, or raise the timeout")
        except aiohttp.ClientConnectionError as exc:
            if limited is not None and limited.exceeded:
                metrics.REJECTED.labels("too_large").inc()
                return error(413, f"request body over {self.settings.max_body_bytes} bytes: send a smaller one")
            figures.failures.inc()
            if response is not None and response.prepared:
                return _cut(request, response, label, f"the replica dropped the connection mid-answer ({_why(exc)})")
            return error(502, f"endpoint {label}: the replica refused or dropped the connection ({_why(exc)}): retry")
        finally:
            left = self.outstanding[upstream] - 1
            if left:
                self.outstanding[upstream] = left
            else:  # pod addresses come and go: keep only those with requests in flight
                del self.outstanding[upstream]
        return self._counted(figures, answer.status, started, usage, response)

    @staticmethod
    def _counted(
        figures: metrics.Series,
        status: int,
        started: float,
        usage: UsageReader | None,
        response: web.StreamResponse,
    ) -> web.StreamResponse:
        figures.duration.observe((time.perf_counter() - started) * 1000)
        by_class = figures.requests.get(f"{status // 100}xx")
        if by_class is not None:
            by_class.inc()
        if status >= 500:
            figures.failures.inc()
        if usage is not None and usage.wanted:
            tokens = usage.tokens()
            if tokens.prompt:
                figures.prompt.inc(tokens.prompt)
            if tokens.completion:
                figures.completion.inc(tokens.completion)
        return response

    def _upstream_headers(self, request: web.BaseRequest) -> CIMultiDict[str]:
        dropped = set(HOP_BY_HOP)
        dropped.update(t.strip().lower() for t in request.headers.get("Connection", "").split(",") if t.strip())
        dropped.add("host")
        dropped.add(SCALE_UP_HEADER.lower())
        if not self.settings.forward_authorization:
            dropped.add("authorization")
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in dropped)
        peer = request.remote or ""
        prior = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
        headers["X-Forwarded-Proto"] = request.scheme
        if "X-Request-Id" not in headers:
            headers["X-Request-Id"] = request.headers.get("X-Amzn-Trace-Id") or _request_id()
        return headers


_LENGTH = HOP_BY_HOP | {"content-length"}  # aiohttp sets Content-Length of a whole body itself


def _copy_headers(source: CIMultiDictProxy[str], response: web.StreamResponse, *, skip: frozenset[str]) -> None:
    for name, value in source.items():
        if name.lower() not in skip:
            response.headers.add(name, value)


class _LimitedBody:
    """A streamed request body that stops at ``limit`` bytes (the upstream call then fails; ``exceeded`` says
    why)."""

    def __init__(self, request: web.BaseRequest, limit: int) -> None:
        self.request = request
        self.limit = limit
        self.exceeded = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self.request.content.iter_any():
            seen += len(chunk)
            if seen > self.limit:
                self.exceeded = True
                raise ValueError(f"request body over {self.limit} bytes")
            yield chunk


class _Pending:
    """A request counts as pending (for the autoscaler and ``dais_gateway_pending``) until it has a status."""

    __slots__ = ("activity", "endpoint_id", "series")

    def __init__(self, activity: Activity, route: Route, series: metrics.Series) -> None:
        self.activity = activity
        self.endpoint_id: str | None = route.endpoint_id
        self.series = series
        activity.started(route.endpoint_id)
        series.pending.inc()

    def answered(self) -> None:
        if self.endpoint_id is not None:
            self.activity.finished(self.endpoint_id)
            self.series.pending.dec()
            self.endpoint_id = None


def _cut(request: web.BaseRequest, response: web.StreamResponse, label: str, why: str) -> web.StreamResponse:
    """The status and part of the body are sent: close the client's connection, so the answer ends visibly
    truncated (no final chunk), rather than looking complete."""
    log.warning("endpoint %s: %s; closing the client connection", label, why)
    if request.transport is not None:
        request.transport.close()
    return response


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


_ID_PREFIX = os.urandom(6).hex()
_ID_COUNTER = itertools.count()


def _request_id() -> str:
    """Unique per process run and cheap (uuid4 reads the kernel's random source on every call)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):012x}"


def _utcnow() -> datetime:
    return datetime.now(UTC)
