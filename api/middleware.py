"""Pure ASGI middleware: request id (taken from X-Request-Id or X-Amzn-Trace-Id, else generated, and
echoed as X-Request-Id), per-route metrics and one access log line per request."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import LATENCY, REQUESTS
from core.domain.ids import new_id
from core.logs import request_id as _request_id

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:=;/+-]{1,128}$")
log = logging.getLogger("dais.api.access")


def current_request_id() -> str:
    value: str = _request_id.get()
    return value


def _incoming_id(scope: Scope) -> str:
    for key, value in scope["headers"]:
        if key in (b"x-request-id", b"x-amzn-trace-id"):
            text: str = value.decode("latin-1")
            if _SAFE_ID.fullmatch(text):
                return text
    return new_id()


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope)
        token = _request_id.set(request_id)
        started = time.perf_counter()
        status = 500
        header = (b"x-request-id", request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route: Any = scope.get("route")
            template = getattr(route, "path", "unmatched")
            REQUESTS.labels(scope["method"], template, str(status)).inc()
            LATENCY.labels(scope["method"], template).observe(elapsed)
            if self.access_log:
                log.info(
                    "%s %s %s",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={"status": status, "durationMs": round(elapsed * 1000, 2), "route": template},
                )
            _request_id.reset(token)
