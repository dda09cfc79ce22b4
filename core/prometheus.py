"""The one Prometheus client: instant queries over the HTTP API (``/api/v1/query``), for the autoscaler's
hardware use and the API's per-endpoint figures, and range queries (``/api/v1/query_range``) for the API's
metric history."""

from __future__ import annotations

import functools
import ssl

import httpx

Points = list[tuple[float, float]]


class PrometheusError(Exception):
    """The query failed or Prometheus answered something other than an instant vector."""


@functools.cache
def _tls() -> ssl.SSLContext:
    """One verifying TLS context per process: making one reads the CA bundle, ~50 ms, which a client made per
    request (the API's) paid every time."""
    return httpx.create_ssl_context()


class PrometheusClient:
    def __init__(self, url: str, *, timeout: float, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=timeout, transport=transport, verify=_tls())
        self.queries = 0  # sent, for the benchmark and the tests

    def vector(self, query: str) -> list[tuple[dict[str, str], float]]:
        """An instant query at Prometheus's own now (so clock skew with this host cannot empty the window):
        each series' labels and value."""
        self.queries += 1
        try:
            response = self._client.get("/api/v1/query", params={"query": query})
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusError(f"Prometheus query failed: {exc}") from exc
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"Prometheus {response.status_code}: {body.get('error') or response.text[:200]}")
        data = body["data"]
        if data["resultType"] != "vector":
            raise PrometheusError(f"expected an instant vector, got {data['resultType']}: {query}")
        return [(series["metric"], float(series["value"][1])) for series in data["result"]]

    def matrix(self, query: str, *, start: float, end: float, step: float) -> list[tuple[dict[str, str], Points]]:
        """A range query evaluated at ``start``, ``start + step`` … up to ``end`` (Unix seconds): each series' labels
        and its points (time, value), which skip the times without a value."""
        self.queries += 1
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        try:
            response = self._client.get("/api/v1/query_range", params=params)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusError(f"Prometheus query failed: {exc}") from exc
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"Prometheus {response.status_code}: {body.get('error') or response.text[:200]}")
        data = body["data"]
        if data["resultType"] != "matrix":
            raise PrometheusError(f"expected a range vector, got {data['resultType']}: {query}")
        return [
            (series["metric"], [(float(at), float(value)) for at, value in series["values"]])
            for series in data["result"]
        ]

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
