"""Serves the web console (the ``console`` package's static files): ``/`` is its page, ``/console/…`` its
modules, styles and vendored libraries.

Every answer carries a Content-Security-Policy with no inline script or style and no framing (clickjacking is
refused), ``nosniff`` and no referrer. Pages may connect to this API and to the gateway, nowhere else: the
playground calls endpoints at their URLs, with the CORS the gateway answers (``DAIS_GATEWAY__CORS_ORIGINS``).
The page and the app's modules are revalidated on every load (ETag, so a 304 costs one round trip) and the
vendored libraries, whose files change only with their version, are cached for a day.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from core.settings import Settings

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'{gateway}; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def security_headers(settings: Settings) -> dict[str, str]:
    """The headers of every console answer; ``connect-src`` adds the gateway endpoints are served from."""
    return {
        "Content-Security-Policy": POLICY.format(gateway="".join(f" {s}" for s in gateway_sources(settings))),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


def gateway_sources(settings: Settings) -> list[str]:
    """CSP sources of the endpoint urls (``{DAIS_GATEWAY_URL}/{namespace}/{name}``): the gateway's origin."""
    url = urlsplit(settings.endpoint_url_base)
    host = url.netloc.rpartition("@")[2]  # a URL's user:password@ is no part of an origin
    if url.scheme not in ("http", "https") or not host or any(c in host for c in " ;,'\"/\\"):
        return []
    return [f"{url.scheme}://{host}"]


def console_directory() -> Path | None:
    """Where the console's files are (None when the package is not installed: the API serves without it)."""
    try:
        found = Path(str(resources.files("console")))
    except ModuleNotFoundError:
        return None
    return found if (found / "index.html").is_file() else None


class _ConsoleFiles(StaticFiles):
    def __init__(self, *, directory: Path, headers: dict[str, str]) -> None:
        super().__init__(directory=directory)
        self.security = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        cache = "public, max-age=86400" if "/vendor/" in path else "no-cache"

        async def with_headers(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])  # type: ignore[call-overload]
                headers.append((b"cache-control", cache.encode()))
                headers.extend(self.security)
                message["headers"] = headers
            await send(message)

        await super().__call__(scope, receive, with_headers)  # type: ignore[arg-type]


def mount_console(app: FastAPI) -> None:
    directory = console_directory()
    if directory is None:
        return
    page = directory / "index.html"
    headers = security_headers(app.state.dais.settings)

    @app.get("/", include_in_schema=False)
    def console_page() -> Response:
        return FileResponse(page, headers={**headers, "Cache-Control": "no-cache"})

    app.mount("/console", _ConsoleFiles(directory=directory, headers=headers), name="console")
