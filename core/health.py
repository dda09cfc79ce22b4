"""``/healthz`` and ``/metrics`` for a component's probes and Prometheus, on a daemon thread."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.net import split_host_port


def serve_health(listen: str, healthy: threading.Event) -> ThreadingHTTPServer:
    """``/healthz``: 200 once ``healthy`` is set (leader or standby alike), else 503."""
    host, port = split_host_port(listen)
    if port is None:
        raise ValueError(f"{listen!r}: name a port, as in 127.0.0.1:9091")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                body, status, kind = generate_latest(), 200, CONTENT_TYPE_LATEST
            elif self.path == "/healthz":
                ok = healthy.is_set()
                body, status, kind = (b"ok" if ok else b"starting"), (200 if ok else 503), "text/plain"
            else:
                body, status, kind = b"not found", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer((host or "127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
