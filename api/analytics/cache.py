"""A results cache for Prometheus range queries, as query frontends (Cortex, Thanos) keep one: the points of a
range query at a step, per query, kept once they are final, so that asking again (a chart's auto-refresh, a
second viewer) asks Prometheus only for the steps it has not answered with final points yet.

A point is final once its time is ``FINALITY`` before now (two steps, at least two minutes: the scrape lag and
the rate window have passed); later ones are asked again every time. Points are aligned to multiples of the
step (the route aligns its windows), so one step's answers always line up. Entries are evicted least recently
used.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from core.prometheus import Points

Matrix = list[tuple[dict[str, str], Points]]
Fetch = Callable[[str, float, float, float], Matrix]  # query, start, end, step


@dataclass
class _Entry:
    first: float  # the first time asked and kept
    final: float  # the last time whose points are final and kept; nothing kept after it counts
    series: dict[tuple[tuple[str, str], ...], dict[float, float]] = field(default_factory=dict)


@dataclass
class RangeCache:
    entries: int = 256
    finality_seconds: float = 120.0
    asked_points: int = 0  # points Prometheus was asked for, for tests and the benchmark
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _kept: OrderedDict[tuple[str, str, float], _Entry] = field(default_factory=OrderedDict)

    def matrix(
        self, fetch: Fetch, *, source: str, query: str, start: float, end: float, step: float, now: float
    ) -> Matrix:
        key = (source, query, step)
        final_until = (now - max(self.finality_seconds, 2 * step)) // step * step
        with self._lock:
            entry = self._kept.get(key)
            if entry is not None:
                self._kept.move_to_end(key)
        if entry is not None and entry.first <= start <= entry.final + step:
            ask_from = max(start, entry.final + step)
        else:
            entry, ask_from = _Entry(first=start, final=start - step), start
        fresh = fetch(query, ask_from, end, step) if ask_from <= end else []
        self.asked_points += int((end - ask_from) // step) + 1 if ask_from <= end else 0
        answer: dict[tuple[tuple[str, str], ...], dict[float, float]] = {
            labels: {at: v for at, v in points.items() if start <= at < ask_from}
            for labels, points in entry.series.items()
        }
        for found_labels, found_points in fresh:
            answer.setdefault(tuple(sorted(found_labels.items())), {}).update(found_points)
        kept = _Entry(first=min(entry.first, start), final=max(entry.final, min(end, final_until)))
        for labels, points in answer.items():
            merged = {**entry.series.get(labels, {}), **points}
            kept.series[labels] = {at: v for at, v in merged.items() if at <= kept.final}
        with self._lock:
            self._kept[key] = kept
            self._kept.move_to_end(key)
            while len(self._kept) > self.entries:
                self._kept.popitem(last=False)
        return [(dict(labels), sorted(points.items())) for labels, points in answer.items() if points]
