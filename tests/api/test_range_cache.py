"""The range-query cache of metric history: a second read asks Prometheus only for the steps whose points were
not final yet; another range, another step or another query is asked in full."""

from __future__ import annotations

from api.analytics.cache import Matrix, RangeCache


class Recorded:
    """Answers range queries with a point per step (value = time / 10 + 1 for code 2xx), and records the asks."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, float, float, float]] = []
        self.shift = 0.0  # added to values, as if the data changed

    def __call__(self, query: str, start: float, end: float, step: float) -> Matrix:
        self.asked.append((query, start, end, step))
        times = [start + i * step for i in range(int((end - start) // step) + 1)]
        return [({"code": "2xx"}, [(t, t / 10 + 1 + self.shift) for t in times])]


def read(cache: RangeCache, fetch: Recorded, *, start: float, end: float, now: float, step: float = 60) -> Matrix:
    return cache.matrix(fetch, source="p", query="q", start=start, end=end, step=step, now=now)


def test_a_refresh_asks_only_for_what_was_not_final() -> None:
    cache, fetch = RangeCache(finality_seconds=120), Recorded()
    first = read(cache, fetch, start=0, end=6000, now=6000)
    assert fetch.asked == [("q", 0, 6000, 60)]
    assert [t for t, _ in first[0][1]] == list(range(0, 6001, 60))

    fetch.shift = 1000.0  # only the points after the final ones may change
    later = read(cache, fetch, start=600, end=6600, now=6600)
    assert fetch.asked[-1] == ("q", 5940, 6600, 60)  # final up to now - 120 s = 5880 when first asked
    points = dict(later[0][1])
    assert sorted(points) == list(range(600, 6601, 60))
    assert points[5880] == 5880 / 10 + 1  # kept from the first answer
    assert points[5940] == 5940 / 10 + 1 + 1000  # asked again

    read(cache, fetch, start=600, end=6600, step=120, now=6600)  # another step: asked in full
    assert fetch.asked[-1] == ("q", 600, 6600, 120)
    read(cache, fetch, start=-6000, end=6600, now=6600)  # earlier than what is kept: asked in full
    assert fetch.asked[-1] == ("q", -6000, 6600, 60)


def test_entries_are_evicted_least_recently_used() -> None:
    cache, fetch = RangeCache(entries=2, finality_seconds=0), Recorded()
    for query in ("a", "b", "a", "c"):
        cache.matrix(fetch, source="p", query=query, start=0, end=600, step=60, now=10_000)
    cache.matrix(fetch, source="p", query="a", start=0, end=600, step=60, now=10_000)
    cache.matrix(fetch, source="p", query="b", start=0, end=600, step=60, now=10_000)
    assert [q for q, *_ in fetch.asked] == ["a", "b", "c", "b"]  # b was the least recently used when c came
