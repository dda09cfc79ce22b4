"""Prometheus metrics of the API; labels are bounded (route templates, never raw paths)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "dais_api_requests_total",
    "API requests by route template and status code.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "dais_api_request_duration_seconds",
    "API request latency by route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
