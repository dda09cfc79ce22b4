"""The autoscaler's Prometheus metrics (module constants, bounded labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TICKS = Counter("dais_autoscaler_ticks_total", "Ticks by result.", ["result"])
TICK_SECONDS = Histogram(
    "dais_autoscaler_tick_duration_seconds",
    "Time of one tick over every endpoint.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DECISIONS = Counter("dais_autoscaler_decisions_total", "Desired counts changed, by direction.", ["direction"])
WAKES = Counter("dais_autoscaler_wakes_total", "Wake signals by result.", ["result"])
WAKE_SECONDS = Histogram(
    "dais_autoscaler_wake_duration_seconds",
    "From a wake signal's arrival to its desired count committed.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LEADER = Gauge("dais_autoscaler_leader", "1 while this process holds the autoscaler lease.")
