"""The local runtime's pure parts, table-tested: what runs for a spec, the plan over processes, the status."""

from __future__ import annotations

import signal
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.desired import EndpointView
from controller.errors import PermanentError
from controller.local_desired import MODEL_DIR, PORT, ReplicaView, local_run, memory_wait, plan_replicas
from controller.local_status import FetchView, ProcessView, observe_local
from core.domain.catalog import load_engine_catalog
from core.domain.enums import EndpointState, ImageVariant

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
ENGINES = load_engine_catalog(None)


def view(image: dict[str, Any] | None = None, **model: Any) -> EndpointView:
    spec = {
        "model": {
            "repository": "org/tiny",
            "image": image or {"huggingface": {}},
            "task": "text-generation",
            **model,
        }
    }
    return EndpointView(id="e1", namespace="ns", name="chat", spec=spec, generation=1, revision="abc", replicas=1)


def test_dais_engine_runs_the_cached_model_with_the_specs_env_and_secrets() -> None:
    endpoint = view(env={"MAX_CONCURRENCY": "4"})
    endpoint = replace(endpoint, secrets={"API_KEY": "s"}, model_path="q4.gguf")
    run = local_run(endpoint, python="/py", engines=ENGINES)
    assert run.command[:4] == ("/py", "-m", "dais", "engine")
    assert run.command[run.command.index("--model") + 1] == f"{MODEL_DIR}/q4.gguf"
    assert run.command[run.command.index("--port") + 1] == PORT
    assert run.env["MAX_CONCURRENCY"] == "4"
    assert run.env["API_KEY"] == "s"
    assert run.include == ("q4.gguf",)
    assert run.model_key == "org/tiny/abc"


def test_the_digest_changes_with_what_runs_and_only_with_it() -> None:
    base = local_run(view(), python="/py", engines=ENGINES).digest
    assert local_run(view(), python="/py", engines=ENGINES).digest == base
    assert local_run(view(env={"X": "1"}), python="/py", engines=ENGINES).digest != base
    assert local_run(view(args=["--context", "8192"]), python="/py", engines=ENGINES).digest != base


DAIS_ENGINE = ("/py", "-m", "dais", "engine")


@pytest.mark.parametrize(
    ("image", "task", "resolved", "installed", "starts"),
    [
        # a GGUF (the Hub resolution says llama.cpp): llama-server when installed, on the GGUF file
        ({"huggingface": {}}, "text-generation", "llamacpp", {ImageVariant.LLAMACPP}, ("llama-server", "--model")),
        ({"huggingface": {}}, "text-generation", "llamacpp", set(), DAIS_ENGINE),
        ({"tgi": {}}, "text-generation", None, {ImageVariant.TGI}, ("text-generation-launcher", "--model-id")),
        ({"tgi": {}}, "text-generation", None, set(), DAIS_ENGINE),
        # huggingface means the catalog's engine for the task: TEI for embeddings
        ({"huggingface": {}}, "feature-extraction", None, {ImageVariant.TEI}, ("text-embeddings-router",)),
        ({"sGLang": {}}, "text-generation", None, {ImageVariant.SGLANG}, ("/py", "-m", "sglang.launch_server")),
    ],
)
def test_an_installed_engine_runs_else_dais_engine(
    image: dict[str, Any], task: str, resolved: str | None, installed: set[ImageVariant], starts: tuple[str, ...]
) -> None:
    endpoint = replace(view(image, task=task), engine=resolved, model_path="q4.gguf" if resolved else None)
    run = local_run(endpoint, python="/py", engines=ENGINES, installed=frozenset(installed))
    assert run.command[: len(starts)] == starts
    if resolved:
        assert f"{MODEL_DIR}/q4.gguf" in run.command
    assert PORT in run.command


@pytest.mark.parametrize("image", [{"custom": {"url": "ghcr.io/me/engine:1"}}, {"tgi": {"url": "my/tgi:1"}}])
def test_a_container_image_is_refused_with_why(image: dict[str, Any]) -> None:
    with pytest.raises(PermanentError, match="no container runtime here"):
        local_run(view(image), python="/py", engines=ENGINES)


def replica(name: str, digest: str = "new", ready: bool = True) -> ReplicaView:
    return ReplicaView(name, digest, ready)


@pytest.mark.parametrize(
    ("replicas", "wanted", "start", "stop"),
    [
        ([], 2, 2, ()),
        ([replica("a"), replica("b")], 2, 0, ()),
        ([replica("a"), replica("b", ready=False)], 1, 0, ("b",)),  # the one not Ready goes first
        ([replica("a"), replica("b")], 0, 0, ("a", "b")),
        # an update: the old version serves until the new one is Ready
        ([replica("o", "old")], 1, 1, ()),
        ([replica("o", "old"), replica("n", ready=False)], 1, 0, ()),
        ([replica("o", "old"), replica("n")], 1, 0, ("o",)),
        # nothing old serves: it goes at once
        ([replica("o", "old", ready=False)], 1, 1, ("o",)),
    ],
)
def test_the_plan(replicas: list[ReplicaView], wanted: int, start: int, stop: tuple[str, ...]) -> None:
    plan = plan_replicas(replicas, digest="new", wanted=wanted)
    assert (plan.start, plan.stop) == (start, stop)


def process(**kw: Any) -> ProcessView:
    return ProcessView(**{"digest": "d", "port": 9000, "started_at": NOW - timedelta(seconds=30), **kw})


def observed(processes: list[ProcessView], *, fetch: FetchView | None = None, replicas: int = 1, **kw: Any) -> Any:
    return observe_local(
        paused=kw.pop("paused", False),
        replicas=replicas,
        digest="d",
        fetch=fetch or FetchView(done=True),
        processes=processes,
        url="http://gw/ns/chat",
        startup_deadline_seconds=1800,
        now=NOW,
        **kw,
    )


@pytest.mark.parametrize(
    ("processes", "fetch", "state", "message"),
    [
        (
            [],
            FetchView(arrived_bytes=150 * 2**20, total_bytes=300 * 2**20),
            "initializing",
            "downloading the model: 50 % (150 of 300 MiB)",
        ),
        (
            [],
            FetchView(error="the Hub refused model.gguf (401): use a token"),
            "failed",
            "downloading the model failed: the Hub refused",
        ),
        ([process()], None, "initializing", "starting the engine and loading the model"),
        ([process(ready=True)], None, "running", "Endpoint is ready"),
        (
            [process(crashes=1, exit_code=1)],
            None,
            "initializing",
            "restarting the engine after it exited (exit code 1; 1 in a row)",
        ),
        (
            [process(crashes=3, exit_code=1, given_up=True, last_lines="ValueError: bad model\nINFO shut down")],
            None,
            "failed",
            "exited 3 times in a row (exit code 1): ValueError: bad model; the line above says why",
        ),
        (
            [process(crashes=3, exit_code=-signal.SIGKILL, given_up=True)],
            None,
            "failed",
            "likely ran out of memory: choose a smaller quantization",
        ),
        ([process(given_up=True, timed_out=True)], None, "failed", "did not become ready within the start-up deadline"),
    ],
)
def test_the_status(processes: list[ProcessView], fetch: FetchView | None, state: str, message: str) -> None:
    observation = observed(processes, fetch=fetch)
    assert observation.state == EndpointState(state)
    assert message in observation.message


def test_an_update_that_fails_keeps_the_old_version_serving() -> None:
    old = process(digest="old", ready=True)
    failing = process(given_up=True, crashes=3, exit_code=1)
    observation = observed([old, failing])
    assert observation.state == EndpointState.UPDATE_FAILED
    assert "the previous version keeps serving" in observation.message
    rolling = observed([old, process()])
    assert rolling.state == EndpointState.UPDATING


def test_paused_and_scaled_to_zero() -> None:
    assert observed([], paused=True).state == EndpointState.PAUSED
    assert observed([], replicas=0).state == EndpointState.SCALED_TO_ZERO


GIB = 2**30


@pytest.mark.parametrize(
    ("count", "promised", "fits", "says"),
    [
        (1, {}, 1, None),
        (2, {"ns/a": 4 * GIB}, 2, None),  # 4 + 2 × 2 = 8 of 8
        (2, {"ns/a": 5 * GIB}, 1, "5.0 of 8.0 GiB are promised to ns/a (5.0 GiB)"),
        (1, {"ns/a": 2 * GIB, "ns/b": 5 * GIB}, 0, "promised to ns/b (5.0 GiB), ns/a (2.0 GiB)"),
    ],
)
def test_replicas_start_only_as_far_as_memory_promised_to_others_allows(
    count: int, promised: dict[str, int], fits: int, says: str | None
) -> None:
    started, why = memory_wait(need=2 * GIB, count=count, promised=promised, capacity=8 * GIB)
    assert started == fits
    if says is None:
        assert why is None
    else:
        assert why is not None
        assert says in why
        assert "needs about 2.0 GiB" in why


def test_a_replica_bigger_than_the_machine_says_so() -> None:
    _, why = memory_wait(need=9 * GIB, count=1, promised={}, capacity=8 * GIB)
    assert why is not None
    assert "more than this machine's 8.0 GiB" in why


def test_waiting_for_memory_is_pending_with_why() -> None:
    observation = observed([], waiting="waiting for memory: …")
    assert (observation.state, observation.message) == (EndpointState.PENDING, "waiting for memory: …")
