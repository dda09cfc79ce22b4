"""Serves the web console (the ``console`` package's static files): ``/`` is its page, ``/console/…`` its
modules, styles and vendored libraries.

Every answer carries a Content-Security-Policy with no inline script or style and no framing (clickjacking is
refused), ``nosniff`` and no referrer. The page and the app's modules are revalidated on every load (ETag, so a
304 costs one round trip) and the vendored libraries, whose files change only with their version, are cached
for a day.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def console_directory() -> Path | None:
    """Where the console's files are (None when the package is not installed: the API serves without it)."""
    try:
        found = Path(str(resources.files("console")))
    except ModuleNotFoundError:
        return None
    return found if (found / "index.html").is_file() else None


class _ConsoleFiles(StaticFiles):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        cache = "public, max-age=86400" if "/vendor/" in path else "no-cache"

        async def with_headers(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])  # type: ignore[call-overload]
                headers.append((b"cache-control", cache.encode()))
                headers.extend((k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items())
                message["headers"] = headers
            await send(message)

        await super().__call__(scope, receive, with_headers)  # type: ignore[arg-type]


def mount_console(app: FastAPI) -> None:
    directory = console_directory()
    if directory is None:
        return
    page = directory / "index.html"

    @app.get("/", include_in_schema=False)
    def console_page() -> Response:
        return FileResponse(page, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    app.mount("/console", _ConsoleFiles(directory=directory), name="console")
