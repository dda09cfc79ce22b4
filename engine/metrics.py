"""The engine's metrics, in a registry of its own (one per engine, so tests and benchmarks can run several).

Names follow the operating guide for local models: ``llm_requests``, ``llm_failures``,
``llm_internal_request_duration_ms``, ``llm_prompt_tokens_total``, ``llm_completion_tokens_total``; and the
queue: ``llm_requests_running`` and ``llm_requests_waiting``; and how busy the slots are, the local runtime's
hardware use: ``llm_slot_busy_seconds_total`` and ``llm_slots``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000)


class _Use:
    """``llm_slot_busy_seconds_total`` and ``llm_slots``: their rate, divided, is how busy the model is (what the
    local runtime's autoscaler reads as hardware use; one request at a time keeps one slot busy)."""

    def __init__(self, busy: Callable[[], float], slots: int) -> None:
        self.busy, self.slots = busy, slots

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("llm_slot_busy_seconds", "Slot-seconds spent on requests.", value=self.busy())
        yield GaugeMetricFamily("llm_slots", "Requests the model serves at once.", value=self.slots)


class EngineMetrics:
    def __init__(
        self, *, running: Callable[[], float], waiting: Callable[[], float], busy: Callable[[], float], slots: int
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Use(busy, slots))
        self.requests = Counter("llm_requests", "Requests received, by route.", ["route"], registry=self.registry)
        self.failures = Counter(
            "llm_failures",
            "Requests that failed (5xx, or refused when busy), by route.",
            ["route"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "llm_internal_request_duration_ms",
            "Time from a request's arrival to its last byte, queueing included, in milliseconds.",
            ["route"],
            buckets=BUCKETS_MS,
            registry=self.registry,
        )
        self.prompt_tokens = Counter("llm_prompt_tokens_total", "Prompt tokens processed.", registry=self.registry)
        self.completion_tokens = Counter("llm_completion_tokens_total", "Tokens generated.", registry=self.registry)
        Gauge("llm_requests_running", "Requests generating now.", registry=self.registry).set_function(running)
        Gauge("llm_requests_waiting", "Requests queued for a slot.", registry=self.registry).set_function(waiting)
