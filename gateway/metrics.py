"""The gateway's Prometheus metrics. ``endpoint`` is ``namespace/name`` of a routed endpoint (a series is
dropped when its endpoint leaves the routing table), so label values are bounded by the number of endpoints;
requests for unknown endpoints are counted without one.

Per-endpoint figures are plain numbers on a ``Series`` (the event loop is their only writer), turned into
metric families when scraped: prometheus_client's metric objects take a lock per update and walk histogram
buckets in Python, which showed in the gateway's profile at tens of thousands of requests a second.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from core.db.models import DURATION_BUCKETS_MS

MS_BUCKETS = DURATION_BUCKETS_MS  # the embedded metric history keeps a count per bucket: one set of bounds for both
_BOUNDS = [str(float(b)) for b in MS_BUCKETS] + ["+Inf"]  # as the exposition writes them

COLD_START_SECONDS = Histogram(
    "dais_gateway_cold_start_duration_seconds",
    "From a held request's arrival to its endpoint serving.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
REJECTED = Counter(
    "dais_gateway_rejected",
    "Requests answered by the gateway itself: unknown endpoint, denied, paused, cold, queue full, bad request.",
    ["reason"],
)
ROUTES = Gauge("dais_gateway_routes", "Endpoints in the routing table.")
LIMIT_REFUSALS = Counter(
    "dais_gateway_limit_refusals",
    "Requests and connections cut short by one of the gateway's limits (DAIS_GATEWAY__*).",
    ["limit"],
)
LIMITS = (
    "header_timeout",
    "body_timeout",
    "idle_timeout",
    "write_timeout",
    "connections",
    "head_size",
    "body_size",
    "upstream_head_size",
)
for _limit in LIMITS:  # every series from the start, at 0: a rate over it needs no "absent" special case
    LIMIT_REFUSALS.labels(_limit)


class Series:
    """One endpoint's figures."""

    __slots__ = (
        "cold_starts",
        "completion",
        "duration_counts",
        "duration_sum",
        "failures",
        "held",
        "label",
        "pending",
        "prompt",
        "requests",
    )

    def __init__(self, label: str) -> None:
        self.label = label
        self.pending = 0  # requests without a response status yet, held ones included
        self.held = 0
        self.cold_starts = 0
        self.requests = [0] * 5  # by status class, 1xx to 5xx
        self.failures = 0
        self.prompt = 0
        self.completion = 0
        self.duration_counts = [0] * (len(MS_BUCKETS) + 1)  # per bucket (not cumulative), +Inf last
        self.duration_sum = 0.0

    def answered(self, status: int, duration_ms: float) -> None:
        if 100 <= status < 600:
            self.requests[status // 100 - 1] += 1
        if status >= 500:
            self.failures += 1
        self.duration_counts[bisect_left(MS_BUCKETS, duration_ms)] += 1
        self.duration_sum += duration_ms


_SERIES: dict[str, Series] = {}


def series(label: str) -> Series:
    found = _SERIES.get(label)
    if found is None:
        found = _SERIES[label] = Series(label)
    return found


def every() -> list[Series]:
    """Every endpoint's figures (for the metric history's sampler)."""
    return list(_SERIES.values())


def drop_endpoint(label: str) -> None:
    """Forgets a removed endpoint's series, which keeps label values bounded."""
    _SERIES.pop(label, None)


class _PerEndpoint(Collector):
    def collect(self) -> Iterator[Metric]:
        every = list(_SERIES.values())
        requests = CounterMetricFamily(
            "llm_requests", "Requests forwarded to an endpoint, by response status class.", labels=["endpoint", "code"]
        )
        failures = CounterMetricFamily(
            "llm_failures",
            "Requests that failed: an upstream 5xx, or no answer (refused, reset, timeout).",
            labels=["endpoint"],
        )
        duration = HistogramMetricFamily(
            "llm_internal_request_duration_ms",
            "Time from forwarding a request upstream to the last byte of its response, in milliseconds.",
            labels=["endpoint"],
        )
        prompt = CounterMetricFamily(
            "llm_prompt_tokens",
            "Prompt tokens reported by the engine (OpenAI usage, TGI details).",
            labels=["endpoint"],
        )
        completion = CounterMetricFamily(
            "llm_completion_tokens",
            "Completion tokens reported by the engine (OpenAI usage, TGI details).",
            labels=["endpoint"],
        )
        pending = GaugeMetricFamily(
            "dais_gateway_pending", "Requests without a response status yet, held ones included.", labels=["endpoint"]
        )
        held = GaugeMetricFamily(
            "dais_gateway_held", "Requests held while their endpoint starts (X-Scale-Up-Timeout).", labels=["endpoint"]
        )
        cold_starts = CounterMetricFamily(
            "dais_gateway_cold_starts", "Wake signals sent for an endpoint with no Ready replica.", labels=["endpoint"]
        )
        for s in every:
            label = [s.label]
            for n, count in enumerate(list(s.requests), start=1):
                requests.add_metric([s.label, f"{n}xx"], count)
            failures.add_metric(label, s.failures)
            counts, total = list(s.duration_counts), 0
            buckets = []
            for bound, count in zip(_BOUNDS, counts, strict=True):
                total += count
                buckets.append((bound, total))
            duration.add_metric(label, buckets, s.duration_sum)
            prompt.add_metric(label, s.prompt)
            completion.add_metric(label, s.completion)
            pending.add_metric(label, s.pending)
            held.add_metric(label, s.held)
            cold_starts.add_metric(label, s.cold_starts)
        yield from (requests, failures, duration, prompt, completion, pending, held, cold_starts)


REGISTRY.register(_PerEndpoint())
