"""The gateway's Prometheus metrics. ``endpoint`` is ``namespace/name`` of a routed endpoint (a series is
dropped when its endpoint leaves the routing table), so label values are bounded by the number of endpoints;
requests for unknown endpoints are counted without one."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_MS_BUCKETS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000)

REQUESTS = Counter("llm_requests", "Requests forwarded to an endpoint, by response status class.", ["endpoint", "code"])
FAILURES = Counter(
    "llm_failures", "Requests that failed: an upstream 5xx, or no answer (refused, reset, timeout).", ["endpoint"]
)
DURATION = Histogram(
    "llm_internal_request_duration_ms",
    "Time from forwarding a request upstream to the last byte of its response, in milliseconds.",
    ["endpoint"],
    buckets=_MS_BUCKETS,
)
PROMPT_TOKENS = Counter(
    "llm_prompt_tokens", "Prompt tokens reported by the engine (OpenAI usage, TGI details).", ["endpoint"]
)
COMPLETION_TOKENS = Counter(
    "llm_completion_tokens", "Completion tokens reported by the engine (OpenAI usage, TGI details).", ["endpoint"]
)
PENDING = Gauge("dais_gateway_pending", "Requests without a response status yet, held ones included.", ["endpoint"])
HELD = Gauge("dais_gateway_held", "Requests held while their endpoint starts (X-Scale-Up-Timeout).", ["endpoint"])
COLD_STARTS = Counter(
    "dais_gateway_cold_starts", "Wake signals sent for an endpoint with no Ready replica.", ["endpoint"]
)
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

PER_ENDPOINT = (REQUESTS, FAILURES, DURATION, PROMPT_TOKENS, COMPLETION_TOKENS, PENDING, HELD, COLD_STARTS)


class Series:
    """One endpoint's children of the per-request metrics, looked up once: ``labels()`` on every request
    showed in the gateway's profile."""

    __slots__ = ("completion", "duration", "failures", "label", "pending", "prompt", "requests")

    def __init__(self, label: str) -> None:
        self.label = label
        self.pending = PENDING.labels(label)
        self.duration = DURATION.labels(label)
        self.failures = FAILURES.labels(label)
        self.prompt = PROMPT_TOKENS.labels(label)
        self.completion = COMPLETION_TOKENS.labels(label)
        self.requests = {f"{n}xx": REQUESTS.labels(label, f"{n}xx") for n in range(1, 6)}


_SERIES: dict[str, Series] = {}


def series(label: str) -> Series:
    found = _SERIES.get(label)
    if found is None:
        found = _SERIES[label] = Series(label)
    return found


def drop_endpoint(label: str) -> None:
    """Forgets a removed endpoint's series, which keeps label values bounded."""
    _SERIES.pop(label, None)
    for metric in PER_ENDPOINT:
        for labels in list(metric._metrics):  # prometheus_client has no public listing
            if labels and labels[0] == label:
                metric.remove(*labels)
