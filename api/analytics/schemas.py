from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from api.schemas import Out


class MetricHistory(Out):
    """An endpoint's metric history as aligned arrays: ``series[name][i]`` is the figure at ``timestamps[i]``, over
    the step that ends there, or null where there is no data."""

    from_: datetime = Field(alias="from", description="The first timestamp (the range's start, aligned to the step).")
    to: datetime = Field(description="The last timestamp (the range's end, aligned to the step).")
    step: int = Field(description="Seconds between timestamps; each figure covers the step that ends at its time.")
    timestamps: list[datetime] = Field(description="Multiples of the step (Unix time).")
    series: dict[str, list[float | None]] = Field(
        description="Per series asked for: requests_2xx … requests_5xx and failures (per second), latency_p50_ms, "
        "latency_p90_ms, latency_p99_ms (from the gateway forwarding a request to the last byte of its answer), "
        "pending and held (requests, summed over gateway replicas), replicas_ready and replicas_desired, "
        "cpu_cores, memory_bytes, gpu_percent and gpu_memory_bytes (per replica, averaged), tokens_in and "
        "tokens_out (per second)."
    )
    source: Literal["prometheus", "embedded"] = Field(
        description="Where the figures come from: Prometheus (DAIS_PROMETHEUS__URL), or the embedded store the "
        "gateway and the controller write every 10 s (kept 7 days, at 5-minute resolution after a day)."
    )
