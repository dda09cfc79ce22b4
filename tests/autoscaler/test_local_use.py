"""Hardware use on the local runtime: how busy a real ``dais engine``'s request slots are, read from its
``/metrics`` each tick."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from autoscaler.sources import LocalUse, Measured, ScaleTarget
from tests.fixtures.dais_engine import DaisEngine
from tests.fixtures.kube import wait_for
from tests.fixtures.models import tiny_llama_gguf

NOW = datetime(2026, 11, 29, tzinfo=UTC)  # LocalUse reads its own monotonic clock; this is only the tick's label


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaisEngine]:
    model = tiny_llama_gguf(tmp_path_factory.mktemp("models") / "tiny" / "model.gguf")
    with DaisEngine(model) as running:
        yield running


def test_a_busy_slot_reads_near_100_and_an_idle_one_near_0(engine: DaisEngine) -> None:
    use = LocalUse(window_s=2.0)
    target = ScaleTarget(id="e", ready=1, starting=0, addresses=(engine.url.removeprefix("http://"),))
    assert use.measure([target], NOW) == Measured()  # one sample: no rate yet, so missing (never a scale-down)
    holding, done = threading.Event(), threading.Event()

    def hold_the_slot() -> None:
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1500, "stream": True}
        with httpx.stream("POST", engine.url + "/v1/chat/completions", json=body, timeout=60) as answer:
            for _ in answer.iter_lines():
                holding.set()
                done.wait(30)
                return

    holder = threading.Thread(target=hold_the_slot)
    holder.start()
    try:
        assert holding.wait(30)
        wait_for(lambda: use.measure([target], NOW).use.get("e", 0) > 80, timeout=30, what="the busy slot read")
    finally:
        done.set()
        holder.join()
    wait_for(lambda: use.measure([target], NOW).use.get("e", 100) < 10, timeout=30, what="the idle slot read")


def test_replicas_gone_from_the_targets_are_forgotten(engine: DaisEngine) -> None:
    use = LocalUse(window_s=60.0)
    address = engine.url.removeprefix("http://")
    use.measure([ScaleTarget(id="e", ready=1, starting=0, addresses=(address,))], NOW)
    assert use.measure([ScaleTarget(id="e", ready=0, starting=0)], NOW) == Measured()
    assert use.measure([ScaleTarget(id="e", ready=1, starting=0, addresses=(address,))], NOW) == Measured()
