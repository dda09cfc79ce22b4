"""An endpoint's metric history (``GET /v2/endpoint/{ns}/{name}/metrics``) as aligned arrays.

The timestamps are the multiples of the step inside ``[from, to]``; the figure at ``t`` covers the step that ends
there, ``(t - step, t]``, as a Prometheus range query with a window of one step does. Two sources:

- **Prometheus** (``DAIS_PROMETHEUS__URL``): one range query per series asked. Traffic is the gateway's series
  (``llm_*``, ``dais_gateway_*``, labelled ``endpoint="ns/name"``) summed over gateway replicas; replicas are
  kube-state-metrics' of the endpoint's Deployment; hardware is cAdvisor's and the DCGM exporter's of its engine
  containers, averaged over its pods. History outlives the pods, whose labels are gone with them: the pods are
  found by the name of their Deployment (``controller.desired.object_name``). Rates and averages take a window of
  one step, ``DAIS_METRIC_HISTORY__PROMETHEUS_WINDOW_SECONDS`` at least.
- **embedded** (``core.db.metric_samples``): the samples summed per step in the database, a range scan of the
  coarsest rows the step is a multiple of (10 s, minutes or 5 minutes) that returns a row per step, and one of
  the 10-s rows for the newest steps, not rolled up yet. The step is rounded up to a multiple of 10 s, or of 5
  minutes where the range reaches back past ``RAW_SERVED`` (older samples are kept only as 5-minute rows).
  Writers skip idle endpoints, so a step with no row inside the endpoint's life and the store's retention is a
  zero; latency and hardware there are null (nothing was measured).

Cost is bounded by the number of points: at most ``MAX_POINTS`` (a 400 naming ``step`` beyond), and the default
step keeps to about ``DEFAULT_POINTS``.
"""

from __future__ import annotations

import functools
import math
import re
import time
from bisect import bisect_left
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import partial
from itertools import accumulate
from string import Template
from typing import Any

from sqlalchemy.orm import Session

from api.analytics import repository
from api.analytics.cache import Matrix, RangeCache
from api.errors import BadRequest, NotFound, ServiceUnavailable
from core.db.metric_samples import COARSE, KEPT, MINUTE, RAW, RAW_SERVED
from core.db.models import DURATION_BUCKETS_MS, DURATION_COLUMNS
from core.domain.timefmt import to_client_time
from core.prometheus import Points, PrometheusClient, PrometheusError
from core.settings import Settings

MAX_POINTS = 11_000
DEFAULT_POINTS = 300
DEFAULT_RANGE = timedelta(hours=1)
STEPS = (10, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)  # the default's choices
PROMETHEUS_QUERIES_AT_ONCE = 8
_POOL = ThreadPoolExecutor(PROMETHEUS_QUERIES_AT_ONCE, thread_name_prefix="prometheus")  # shared by requests
RANGES = RangeCache()  # final points of range queries, per process: a refresh asks only for the newest steps


@functools.lru_cache(maxsize=4)
def _prometheus(url: str, timeout: float) -> PrometheusClient:
    """One client per Prometheus, shared by requests and threads (httpx's pool is thread-safe): its kept-alive
    connections spare each answer a dozen connects."""
    return PrometheusClient(url, timeout=timeout)


_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_STEP = re.compile(r"\s*(\d{1,9})\s*([smhd]?)\s*")


class Kind(StrEnum):
    PER_SECOND = "per_second"  # a sum over the step, per second of it (rates; the mean of a gauge)
    QUANTILE = "quantile"  # of the latency histogram's buckets summed over the step
    PER_REPLICA = "per_replica"  # a sum over the replica-seconds measured


@dataclass(frozen=True, slots=True)
class Series:
    kind: Kind
    columns: tuple[str, ...]  # embedded: what is summed (per replica: the figure, then the replica-seconds)
    query: str  # PromQL; $label ("ns/name"), $namespace and $deployment (on Kubernetes), $window are filled in
    quantile: float = 0.0


_GATEWAY = '{endpoint="$label"}'
_ENGINE = '{namespace="$namespace", container="engine", pod=~"$deployment-.+"}'
_GPU = '{namespace="$namespace", pod=~"$deployment-.+"}'
_DEPLOYMENT = '{namespace="$namespace", deployment="$deployment"}'


def _requests(code: str) -> Series:
    query = f'sum(rate(llm_requests_total{{endpoint="$label", code="{code}"}}[$window]))'
    return Series(Kind.PER_SECOND, (f"requests_{code}",), query)


def _latency(quantile: float) -> Series:
    buckets = f"sum by (le) (rate(llm_internal_request_duration_ms_bucket{_GATEWAY}[$window]))"
    query = f"histogram_quantile({quantile}, {buckets})"
    return Series(Kind.QUANTILE, DURATION_COLUMNS, query, quantile)


SERIES: dict[str, Series] = {
    "requests_2xx": _requests("2xx"),
    "requests_3xx": _requests("3xx"),
    "requests_4xx": _requests("4xx"),
    "requests_5xx": _requests("5xx"),
    "failures": Series(Kind.PER_SECOND, ("failures",), f"sum(rate(llm_failures_total{_GATEWAY}[$window]))"),
    "latency_p50_ms": _latency(0.5),
    "latency_p90_ms": _latency(0.9),
    "latency_p99_ms": _latency(0.99),
    "pending": Series(Kind.PER_SECOND, ("pending_s",), f"sum(avg_over_time(dais_gateway_pending{_GATEWAY}[$window]))"),
    "held": Series(Kind.PER_SECOND, ("held_s",), f"sum(avg_over_time(dais_gateway_held{_GATEWAY}[$window]))"),
    "replicas_ready": Series(
        Kind.PER_SECOND,
        ("ready_s",),
        f"max(avg_over_time(kube_deployment_status_replicas_ready{_DEPLOYMENT}[$window]))",
    ),
    "replicas_desired": Series(
        Kind.PER_SECOND, ("desired_s",), f"max(avg_over_time(kube_deployment_spec_replicas{_DEPLOYMENT}[$window]))"
    ),
    "cpu_cores": Series(
        Kind.PER_REPLICA, ("cpu_s", "measured_s"), f"avg(rate(container_cpu_usage_seconds_total{_ENGINE}[$window]))"
    ),
    "memory_bytes": Series(
        Kind.PER_REPLICA,
        ("memory_bs", "measured_s"),
        f"avg(avg_over_time(container_memory_working_set_bytes{_ENGINE}[$window]))",
    ),
    "gpu_percent": Series(
        Kind.PER_REPLICA, ("gpu_s", "gpu_measured_s"), f"avg(avg_over_time(DCGM_FI_DEV_GPU_UTIL{_GPU}[$window]))"
    ),
    "gpu_memory_bytes": Series(
        Kind.PER_REPLICA,
        ("gpu_memory_bs", "gpu_measured_s"),
        f"avg(avg_over_time(DCGM_FI_DEV_FB_USED{_GPU}[$window])) * 1048576",  # MiB
    ),
    "tokens_in": Series(Kind.PER_SECOND, ("prompt_tokens",), f"sum(rate(llm_prompt_tokens_total{_GATEWAY}[$window]))"),
    "tokens_out": Series(
        Kind.PER_SECOND, ("completion_tokens",), f"sum(rate(llm_completion_tokens_total{_GATEWAY}[$window]))"
    ),
}


class Source(StrEnum):
    PROMETHEUS = "prometheus"
    EMBEDDED = "embedded"


@dataclass(frozen=True, slots=True)
class Window:
    """The timestamps: ``first``, ``first + step`` … ``last`` (Unix seconds, multiples of ``step``) inside the range
    asked for, ``[since, until]``."""

    first: int
    last: int
    step: int
    since: float
    until: float

    @property
    def points(self) -> int:
        return (self.last - self.first) // self.step + 1 if self.last >= self.first else 0

    def times(self) -> range:
        return range(self.first, self.last + 1, self.step)


@dataclass(frozen=True, slots=True)
class Query:
    window: Window
    series: tuple[str, ...]
    source: Source


@dataclass(frozen=True, slots=True)
class EndpointRef:
    namespace: str
    name: str
    id: str
    created_at: datetime


# -- the query ---------------------------------------------------------------------------------------------------


def plan(
    *,
    start: datetime | None,
    end: datetime | None,
    step: str | None,
    series: str | None,
    source: Source | None,
    prometheus: bool,
    now: datetime,
) -> Query:
    """The query's source, series and timestamps; a 400 naming the parameter at fault."""
    if source is Source.PROMETHEUS and not prometheus:
        raise _bad("source", "no Prometheus is configured (DAIS_PROMETHEUS__URL): leave source out, or use embedded")
    chosen = source or (Source.PROMETHEUS if prometheus else Source.EMBEDDED)
    return Query(
        window=window(start=start, end=end, step=step, now=now, embedded=chosen is Source.EMBEDDED),
        series=parse_series(series),
        source=chosen,
    )


def parse_series(text: str | None) -> tuple[str, ...]:
    if not text:
        return tuple(SERIES)
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [n for n in names if n not in SERIES]
    if unknown or not names:
        raise _bad("series", f"unknown: {', '.join(unknown) or '(none given)'}; choose from {', '.join(SERIES)}")
    return names


def parse_step(text: str) -> int:
    """Seconds, or a duration: ``60``, ``60s``, ``5m``, ``1h``, ``1d``."""
    match = _STEP.fullmatch(text)
    seconds = int(match.group(1)) * _UNITS[match.group(2)] if match else 0
    if seconds < 1:
        raise _bad("step", f"{text!r} is not a step: give seconds or a duration, as in 60, 30s, 5m, 1h or 1d")
    return seconds


def window(*, start: datetime | None, end: datetime | None, step: str | None, now: datetime, embedded: bool) -> Window:
    until = (end or now).timestamp()
    since = start.timestamp() if start is not None else until - DEFAULT_RANGE.total_seconds()
    if until <= since:
        raise _bad("to", "must be after from")
    span = until - since
    seconds = parse_step(step) if step is not None else _default_step(span)
    if embedded:
        seconds = _stored_step(seconds, since=since, now=now.timestamp())
    found = Window(math.ceil(since / seconds) * seconds, math.floor(until / seconds) * seconds, seconds, since, until)
    if found.points > MAX_POINTS:
        least = math.ceil(span / (MAX_POINTS - 1))
        raise _bad(
            "step",
            f"{seconds} s gives {found.points} points over this range, more than {MAX_POINTS}: use a step of at "
            f"least {least} s (e.g. {_readable(_ceil_step(least))}), or a shorter range",
        )
    return found


def _default_step(span: float) -> int:
    for step in STEPS:
        if span / step <= DEFAULT_POINTS:
            return step
    return math.ceil(span / DEFAULT_POINTS / 86400) * 86400


def _stored_step(step: int, *, since: float, now: float) -> int:
    """Up to a multiple of the samples' resolution: 10 s, or 5 minutes when the range reaches the rollups."""
    step = math.ceil(step / RAW) * RAW
    if math.ceil(since / step) * step - step < now - RAW_SERVED:
        step = math.ceil(step / COARSE) * COARSE
    return step


def _ceil_step(seconds: int) -> int:
    return next((s for s in STEPS if s >= seconds), math.ceil(seconds / 86400) * 86400)


def _readable(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _bad(field: str, message: str) -> BadRequest:
    return BadRequest(f"{field}: {message}", fields=[{"field": field, "message": message}])


def endpoint(session: Session, *, namespace: str, name: str) -> EndpointRef:
    found = repository.live_endpoint(session, namespace, name)
    if found is None:
        raise NotFound(f"endpoint {namespace}/{name} not found: check the namespace and name (GET /v2/endpoint/...)")
    return EndpointRef(namespace, name, found[0], found[1])


# -- the embedded store --------------------------------------------------------------------------------------------


def embedded(
    session: Session, *, endpoint: EndpointRef, window: Window, series: Sequence[str], now: datetime
) -> dict[str, list[float | None]]:
    """The series from the embedded store: a range scan per resolution read (``_parts``: at most three, most often
    one or two), each sending back a row per step with samples."""
    step, points = window.step, window.points
    if not points:
        return {name: [] for name in series}
    columns = tuple(dict.fromkeys(column for name in series for column in SERIES[name].columns))
    moment = now.timestamp()
    origin = window.first - step  # point k covers (origin + k·step, origin + (k+1)·step]
    sums: dict[int, tuple[Any, ...]] = {}
    for resolution, after, until in _parts(session, window, moment):
        sums |= repository.step_sums(
            session,
            endpoint.id,
            resolution=resolution,
            origin=origin,
            step=step,
            after=after,
            until=until,
            columns=columns,
        )
    by_column = _columns(sums, columns, points)
    created = endpoint.created_at.timestamp()
    covered = [created < t and t - step < moment and t > moment - KEPT for t in window.times()]
    answer: dict[str, list[float | None]] = {}
    quantiles = _quantiles([by_column[c] for c in DURATION_COLUMNS], series) if DURATION_COLUMNS[0] in by_column else {}
    for name in series:
        found = SERIES[name]
        if found.kind is Kind.PER_SECOND:
            answer[name] = [
                total / step if ok else None for total, ok in zip(by_column[found.columns[0]], covered, strict=True)
            ]
        elif found.kind is Kind.QUANTILE:
            answer[name] = quantiles[name]
        else:
            answer[name] = [
                figure / measured if measured else None
                for figure, measured in zip(by_column[found.columns[0]], by_column[found.columns[1]], strict=True)
            ]
    return answer


def _columns(sums: dict[int, tuple[Any, ...]], columns: Sequence[str], points: int) -> dict[str, list[Any]]:
    """Per column, its sum at each point: 0 where there is no row or a NULL (writers skip what is zero)."""
    order = sorted(sums)
    rows = [sums[k] for k in order]
    found: dict[str, list[Any]] = {}
    contiguous = bool(order) and order[-1] - order[0] + 1 == len(order)
    for name, values in zip(columns, zip(*rows, strict=True) if rows else [()] * len(columns), strict=True):
        column = [0] * points
        if contiguous:  # the usual case, a row per step: one slice
            column[order[0] : order[-1] + 1] = [v or 0 for v in values]
        else:
            for k, v in zip(order, values, strict=True):
                column[k] = v or 0
        found[name] = column
    return found


def _parts(session: Session, window: Window, moment: float) -> list[tuple[int, int, int]]:
    """Which rows serve which steps, as (resolution, after, until): the steps older than ``RAW_SERVED`` from the
    5-minute rows (the step is a multiple of theirs); the newer ones from the coarsest rows the step is a multiple
    of, as far as they are rolled up, and the rest from the 10-s rows. Every boundary is a step boundary, so each
    step is read from one resolution."""
    step, last = window.step, window.last
    origin = window.first - step

    def clamped(boundary: int) -> int:
        return min(max(boundary, origin), last)

    old = clamped(origin + math.ceil((moment - RAW_SERVED - origin) / step) * step)  # the first inside the 10-s reach
    tier = next((r for r in (COARSE, MINUTE) if step % r == 0), RAW)
    rolled = repository.rolled_up_to(session, tier) if tier != RAW else None
    split = max(clamped(origin + (rolled - origin) // step * step), old) if rolled is not None else old
    parts: list[tuple[int, int, int]] = []
    for resolution, after, until in ((COARSE, origin, old), (tier, old, split), (RAW, split, last)):
        if until <= after:
            continue
        if parts and parts[-1][0] == resolution and parts[-1][2] == after:
            parts[-1] = (resolution, parts[-1][1], until)
        else:
            parts.append((resolution, after, until))
    return parts


def _quantiles(buckets: list[list[int]], series: Sequence[str]) -> dict[str, list[float | None]]:
    """The latency series asked for, from the per-point bucket counts (a column per bucket)."""
    wanted = [(name, SERIES[name].quantile) for name in series if SERIES[name].kind is Kind.QUANTILE]
    found: dict[str, list[float | None]] = {name: [] for name, _ in wanted}
    for counts in zip(*buckets, strict=True):
        cumulative = list(accumulate(counts))
        for name, q in wanted:
            found[name].append(_quantile(q, cumulative))
    return found


def quantile(q: float, counts: Sequence[int]) -> float | None:
    """The q-quantile of a histogram of ``DURATION_BUCKETS_MS`` (counts per bucket, +Inf last), interpolated
    linearly inside its bucket as Prometheus's ``histogram_quantile`` does; None without observations."""
    return _quantile(q, list(accumulate(counts)))


def _quantile(q: float, cumulative: list[int]) -> float | None:
    total = cumulative[-1]
    if not total:
        return None
    rank = q * total
    i = bisect_left(cumulative, rank)  # the first bucket holding the rank-th observation
    if i == len(DURATION_BUCKETS_MS):  # the +Inf bucket: its lower bound, as Prometheus answers
        return float(DURATION_BUCKETS_MS[-1])
    below = cumulative[i - 1] if i else 0
    lower = DURATION_BUCKETS_MS[i - 1] if i else 0.0
    return round(lower + (DURATION_BUCKETS_MS[i] - lower) * (rank - below) / (cumulative[i] - below), 6)


# -- Prometheus ------------------------------------------------------------------------------------------------


def from_prometheus(
    settings: Settings, *, endpoint: EndpointRef, window: Window, series: Sequence[str]
) -> dict[str, list[float | None]]:
    """The series from Prometheus: one range query each, a few at a time; a 503 when it does not answer."""
    url = settings.prometheus.url
    assert url is not None
    if not window.points:
        return {name: [] for name in series}
    values = {
        "label": _quoted(f"{endpoint.namespace}/{endpoint.name}"),
        "namespace": _quoted(settings.controller.namespace),
        "deployment": _quoted(deployment(endpoint)),
        "window": f"{max(window.step, math.ceil(settings.metric_history.prometheus_window_seconds))}s",
    }
    # One query for every status class (by code); the other series are a query each. (Quantiles stay
    # Prometheus's histogram_quantile: fetching every bucket's rates to compute them here sent ~8x the points
    # and took longer to decode than Prometheus took to compute them.)
    classes = [name for name in series if name.startswith("requests_")]
    queries = {name: SERIES[name].query for name in series if name not in classes}
    if classes:
        queries[CLASSES] = 'sum by (code) (rate(llm_requests_total{endpoint="$label"}[$window]))'
    prometheus = _prometheus(url, settings.prometheus.timeout_seconds)
    try:
        futures = {
            name: _POOL.submit(
                RANGES.matrix,
                partial(_range_query, prometheus),
                source=url,
                query=Template(query).substitute(values),
                start=window.first,
                end=window.last,
                step=window.step,
                now=time.time(),
            )
            for name, query in queries.items()
        }
        found = {name: future.result() for name, future in futures.items()}
    except PrometheusError as exc:
        raise ServiceUnavailable(f"Prometheus at {url} did not answer ({exc}): retry, or check the server") from None

    first, step, count = window.first, window.step, window.points
    slots = {float(at): k for k, at in enumerate(window.times())}  # Prometheus answers at exactly these times

    def aligned(matrix: list[tuple[dict[str, str], Points]]) -> list[float | None]:
        """The points at their timestamps' places. Values stay as Prometheus wrote them (the shortest text of
        its float64): rounding them cost more than the rest of the answer and only lost precision."""
        values_at: list[float | None] = [None] * count
        for _, points in matrix:
            for at, value in points:
                k = slots.get(at)
                if k is None:  # off the grid: the nearest step
                    k = int((at - first) / step + 0.5)
                    if not 0 <= k < count:
                        continue
                values_at[k] = value if math.isfinite(value) else None
        return values_at

    answer: dict[str, list[float | None]] = {}
    for name in series:
        if name in classes:
            code = name.removeprefix("requests_")
            answer[name] = aligned(
                [(labels, points) for labels, points in found[CLASSES] if labels.get("code") == code]
            )
        else:
            answer[name] = aligned(found[name])
    return answer


CLASSES = "requests by code"


def _range_query(prometheus: PrometheusClient, query: str, start: float, end: float, step: float) -> Matrix:
    return prometheus.matrix(query, start=start, end=end, step=step)


def deployment(endpoint: EndpointRef) -> str:
    """The name of the endpoint's Deployment on Kubernetes, as the controller makes it
    (``controller.desired.object_name``); its pods' names start with it."""
    return f"ep-{endpoint.name}-{endpoint.id[:12]}"


def _quoted(value: str) -> str:
    """Inside a PromQL double-quoted string."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


# -- the answer ---------------------------------------------------------------------------------------------------


def render(query: Query, figures: dict[str, list[float | None]]) -> dict[str, Any]:
    """The answer's body (``MetricHistory``); ``from`` and ``to`` are the first and last timestamps, or the range
    asked for when no multiple of the step falls inside it."""
    window = query.window
    first, step = datetime.fromtimestamp(window.first, UTC).replace(tzinfo=None), timedelta(seconds=window.step)
    times = [(first + step * k).isoformat(timespec="milliseconds") + "Z" for k in range(window.points)]  # UTC
    return {
        "from": times[0] if times else to_client_time(datetime.fromtimestamp(window.since, UTC)),
        "to": times[-1] if times else to_client_time(datetime.fromtimestamp(window.until, UTC)),
        "step": window.step,
        "timestamps": times,
        "series": figures,
        "source": query.source.value,
    }
