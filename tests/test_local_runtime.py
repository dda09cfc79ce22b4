"""``dais serve`` on the local runtime, end to end: models made here and served by the local Hub, deployed with
the real ``huggingface_hub`` client, answered by real ``dais engine`` processes through the gateway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import huggingface_hub.constants as hf_constants
import pytest
from huggingface_hub import HfApi, InferenceClient, InferenceEndpoint
from openai import OpenAI

from core.replica_logs import LogWriter
from tests.factories import ADMIN_TOKEN
from tests.fixtures.dais_serve import Serve, dais_serve, engine_pids
from tests.fixtures.hub import HubServer
from tests.fixtures.kube import wait_for
from tests.fixtures.models import tiny_llama_gguf, tiny_llama_safetensors
from tests.fixtures.sse import Watcher

CHAT, EMBED, BROKEN = "dais-test/tiny-chat", "dais-test/tiny-embed", "dais-test/broken"
SAFETENSORS = "dais-test/tiny-llama"
# This machine's CPU row: the local runtime's hardware catalog.
CPU = {"vendor": "local", "region": "local", "accelerator": "cpu", "instance_type": "cpu", "instance_size": "x1"}
WAIT_S = 120


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    models = tmp_path_factory.mktemp("models")
    with HubServer() as server:
        gguf = tiny_llama_gguf(models / "tiny-chat.gguf")
        server.add_model(CHAT, {"tiny-chat.gguf": gguf}, pipeline_tag="text-generation", library_name="gguf")
        server.add_model(EMBED, {"tiny-embed.gguf": gguf}, pipeline_tag="feature-extraction", library_name="gguf")
        directory = tiny_llama_safetensors(models / "tiny-llama")
        files = {path.name: path for path in directory.iterdir()}
        server.add_model(SAFETENSORS, files, pipeline_tag="text-generation", library_name="transformers")
        broken = models / "broken.gguf"
        broken.write_bytes(b"GGUF" + b"\0" * 64)
        server.add_model(BROKEN, {"broken.gguf": broken}, pipeline_tag="text-generation", library_name="gguf")
        yield server


@pytest.fixture(scope="module")
def serve(hub: HubServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    with dais_serve(hub, tmp_path_factory.mktemp("home")) as running:
        yield running


@pytest.fixture
def hf(serve: Serve, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> HfApi:
    return redirected(serve, monkeypatch, tmp_path)


def redirected(serve: Serve, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> HfApi:
    """The real client, pointed at ``serve`` (reference §1), with the admin token as ``HF_TOKEN``."""
    monkeypatch.setattr(hf_constants, "INFERENCE_ENDPOINTS_ENDPOINT", f"{serve.url}/v2")
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    monkeypatch.setenv("HF_TOKEN", ADMIN_TOKEN)
    return HfApi(endpoint=serve.url, token=ADMIN_TOKEN)


def deploy(hf: HfApi, repository: str, **kwargs: Any) -> InferenceEndpoint:
    name = f"e-{uuid.uuid4().hex[:8]}"
    task = kwargs.pop("task", "text-generation")
    return hf.create_inference_endpoint(
        name, repository=repository, framework="pytorch", task=task, namespace="admin", **{**CPU, **kwargs}
    )


def chat(endpoint: InferenceEndpoint, *, max_tokens: int = 4, **headers: str) -> httpx.Response:
    body = {"model": CHAT, "messages": [{"role": "user", "content": "hello"}], "max_tokens": max_tokens}
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}", **headers}
    assert endpoint.url is not None
    return httpx.post(f"{endpoint.url}/v1/chat/completions", json=body, headers=auth, timeout=WAIT_S)


def test_a_hub_model_deployed_with_huggingface_hub_streams_tokens_through_the_gateway(hf: HfApi, serve: Serve) -> None:
    endpoint = deploy(hf, CHAT).wait(timeout=WAIT_S)
    assert endpoint.url is not None
    assert endpoint.url.startswith(serve.gateway)
    client = InferenceClient(base_url=endpoint.url, token=ADMIN_TOKEN)
    streamed = [
        chunk.choices[0].delta.content
        for chunk in client.chat_completion(messages=[{"role": "user", "content": "hi"}], max_tokens=5, stream=True)
        if chunk.choices and chunk.choices[0].delta.content
    ]
    assert len(streamed) == 5
    openai = OpenAI(base_url=f"{endpoint.url}/v1", api_key=ADMIN_TOKEN)
    usage = None
    for chunk in openai.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    ):
        usage = chunk.usage or usage
    assert usage is not None
    assert usage.completion_tokens == 3
    assert usage.prompt_tokens > 0
    endpoint.delete()


def test_a_safetensors_llama_is_served_by_mistral_rs(hf: HfApi) -> None:
    endpoint = deploy(hf, SAFETENSORS).wait(timeout=WAIT_S)
    assert endpoint.url is not None
    openai = OpenAI(base_url=f"{endpoint.url}/v1", api_key=ADMIN_TOKEN)
    answer = openai.chat.completions.create(
        model=SAFETENSORS, messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert answer.choices[0].message.content
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 4
    endpoint.delete()


def test_an_embedding_model_answers_feature_extraction(hf: HfApi) -> None:
    endpoint = deploy(hf, EMBED, task="sentence-embeddings").wait(timeout=WAIT_S)
    assert endpoint.url is not None
    vector = InferenceClient(base_url=endpoint.url, token=ADMIN_TOKEN).feature_extraction("the quick brown fox")
    assert vector.size == 64
    endpoint.delete()


def test_pause_stops_the_processes_and_resume_starts_them(hf: HfApi, serve: Serve) -> None:
    before = engine_pids(serve.home)
    endpoint = deploy(hf, CHAT).wait(timeout=WAIT_S)
    mine = engine_pids(serve.home) - before
    assert mine
    endpoint.pause()
    wait_for(lambda: not engine_pids(serve.home) & mine, timeout=WAIT_S, what="the paused engine to stop")
    endpoint.resume().wait(timeout=WAIT_S)
    assert chat(endpoint).status_code == 200
    endpoint.delete()


def test_a_killed_engine_is_restarted_and_serves_again(hf: HfApi, serve: Serve) -> None:
    before = engine_pids(serve.home)
    endpoint = deploy(hf, CHAT).wait(timeout=WAIT_S)
    (victim,) = engine_pids(serve.home) - before
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: (engine_pids(serve.home) - before - {victim}) and chat(endpoint).status_code == 200,
        timeout=WAIT_S,
        what="a new engine process answering",
    )
    endpoint.delete()


def test_an_engine_that_exits_at_start_fails_the_endpoint_with_its_last_lines(hf: HfApi, serve: Serve) -> None:
    endpoint = deploy(hf, BROKEN)

    def failed() -> str | None:
        endpoint.fetch()
        return endpoint.raw["status"]["message"] if endpoint.raw["status"]["state"] == "failed" else None

    message = wait_for(failed, timeout=WAIT_S, what="the endpoint to fail")
    assert "exited 3 times in a row (exit code 1)" in message
    assert "could not load broken.gguf" in message
    # The controller's own event, in the namespace's audit log beside the user's create.
    audit = httpx.get(
        f"{serve.url}/v2/audit-logs/admin",
        params={"endpoint": endpoint.name},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ).json()["items"]
    assert [(e["actor"], e["action"]) for e in audit] == [("controller", "failed"), ("admin", "endpoint.create")]
    assert "exited 3 times in a row" in audit[0]["diff"][1]["new"]
    endpoint.delete()


def test_scaled_to_zero_it_wakes_on_a_request_that_waits_for_it(hf: HfApi, serve: Serve) -> None:
    before = engine_pids(serve.home)
    endpoint = deploy(hf, CHAT).wait(timeout=WAIT_S)
    url = endpoint.url  # as a client keeps it: the status shows no URL while at zero
    mine = engine_pids(serve.home) - before
    endpoint.scale_to_zero()
    wait_for(
        lambda: endpoint.fetch().raw["status"]["state"] == "scaledToZero" and not engine_pids(serve.home) & mine,
        timeout=WAIT_S,
        what="scaled to zero, its process stopped",
    )
    body = {"model": CHAT, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Scale-Up-Timeout": str(WAIT_S)}
    woken = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=WAIT_S)
    assert woken.status_code == 200, woken.text
    assert woken.json()["usage"]["completion_tokens"] == 4
    endpoint.delete()


def test_delete_leaves_no_process_and_no_files_but_the_shared_model_cache(hf: HfApi, serve: Serve) -> None:
    logs = serve.home / "logs"
    pids_before, logs_before = engine_pids(serve.home), set(logs.glob("*")) if logs.exists() else set()
    endpoint = deploy(hf, CHAT).wait(timeout=WAIT_S)
    mine = engine_pids(serve.home) - pids_before
    (log_dir,) = set(logs.glob("*")) - logs_before  # DAIS_HOME/logs/<endpoint id>
    assert mine
    assert any(log_dir.glob("*.log"))
    endpoint.delete()
    wait_for(
        lambda: not log_dir.exists() and not (engine_pids(serve.home) & mine),
        timeout=WAIT_S,
        what="its processes and logs gone",
    )
    assert any((serve.home / "models" / CHAT).iterdir()), "the model cache stays for the next endpoint"


def test_an_endpoint_that_does_not_fit_beside_the_others_waits_naming_them(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Room for one replica of the tiny model (about 512 MiB promised each) and not two.
    home = tmp_path / "home"
    home.mkdir()
    with dais_serve(hub, home, DAIS_CONTROLLER__LOCAL_MEMORY_GB="0.8") as small:
        api = redirected(small, monkeypatch, tmp_path)
        first = deploy(api, CHAT).wait(timeout=WAIT_S)
        second = deploy(api, CHAT)

        def waiting() -> str | None:
            status = second.fetch().raw["status"]
            return status["message"] if status["state"] == "pending" and "memory" in status["message"] else None

        message = wait_for(waiting, timeout=WAIT_S, what="the second endpoint waiting for memory")
        assert f"admin/{first.name}" in message
        assert "scale one of them down or to zero" in message
        first.pause()  # its memory comes free: the second starts
        second.wait(timeout=WAIT_S)
        assert chat(second).status_code == 200


def test_an_engine_counts_as_installed_when_its_executable_is_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.local import installed_engines
    from core.domain.catalog import load_engine_catalog
    from core.domain.enums import ImageVariant

    engines = load_engine_catalog(None)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert ImageVariant.LLAMACPP not in installed_engines(engines)
    server = tmp_path / "llama-server"
    server.write_text("#!/bin/sh\nexit 0\n")
    server.chmod(0o755)
    assert ImageVariant.LLAMACPP in installed_engines(engines)
    assert ImageVariant.TGI not in installed_engines(engines)


def test_load_scales_an_endpoint_up_on_its_engines_busy_slots_and_back_down_when_it_stops(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scaling rules' numbers shortened from minutes to seconds; the rules are the real ones.
    fast = {
        "DAIS_AUTOSCALER__TICK_SECONDS": "1",
        "DAIS_AUTOSCALER__UTILIZATION_WINDOW_SECONDS": "3",
        "DAIS_AUTOSCALER__UP_INTERVAL_SECONDS": "2",
        "DAIS_AUTOSCALER__DOWN_INTERVAL_SECONDS": "2",
        "DAIS_AUTOSCALER__STABILIZATION_SECONDS": "4",
    }
    home = tmp_path / "home"
    home.mkdir()
    with dais_serve(hub, home, **fast) as running:
        api = redirected(running, monkeypatch, tmp_path)
        endpoint = deploy(api, CHAT, min_replica=1, max_replica=2).wait(timeout=WAIT_S)
        stop = threading.Event()

        def load() -> None:  # one request after another: the one slot of the one replica is always busy
            while not stop.is_set():
                chat(endpoint, max_tokens=3000)

        loader = threading.Thread(target=load)
        loader.start()
        try:
            wait_for(lambda: len(engine_pids(home, CHAT)) == 2, timeout=WAIT_S, what="a second replica for the load")
        finally:
            stop.set()
            loader.join()
        wait_for(lambda: len(engine_pids(home, CHAT)) == 1, timeout=WAIT_S, what="back to one replica, idle")
        scaling = httpx.get(
            f"{running.url}/v2/endpoint/admin/{endpoint.name}/scaling",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ).json()
        changes = [(d["previous"], d["final"]) for d in reversed(scaling["decisions"]) if d["previous"] != d["final"]]
        assert changes == [(1, 2), (2, 1)]
        up = next(d for d in scaling["decisions"] if d["final"] == 2)
        assert "above 80 on 1 replicas: up to 2" in up["reason"]
        assert up["inputs"]["utilization"] > 80  # the busy slot, read from the engine


def test_logs_show_each_replica_and_outlive_it_with_secrets_masked(hf: HfApi, serve: Serve) -> None:
    endpoint = deploy(hf, CHAT, secrets={"API_KEY": "s3cr3t-value"}).wait(timeout=WAIT_S)
    assert chat(endpoint).status_code == 200
    url = f"{serve.url}/v2/endpoint/admin/{endpoint.name}/logs"
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def logs(**params: str | int) -> dict[str, Any]:
        answer = httpx.get(url, params=params, headers=auth)
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    first = logs()
    assert first["source"] == "local"
    ((replica),) = first["replicas"]
    assert replica["stoppedAt"] is None
    spans = wait_for(lambda: logs(search="dais.engine.span")["lines"], timeout=10, what="the engine's spans")
    assert {line["stream"] for line in spans} == {"stderr"}  # the engine logs to stderr
    assert {line["replica"] for line in spans} == {replica["id"]}
    assert len(logs(tail=1)["lines"]) == 1
    # Whatever a replica prints, an endpoint secret's value never comes out of the route.
    folder = serve.home / "logs"
    (directory,) = [d for d in folder.iterdir() if (d / f"{replica['id']}.log").exists()]
    writer = LogWriter(directory / f"{replica['id']}.log")
    writer.write("stdout", "connecting with s3cr3t-value")
    writer.close()
    masked = logs(search="connecting with")["lines"]
    assert [line["line"] for line in masked] == ["connecting with ********"]
    # Lines older than DAIS_LOGS__RETENTION_DAYS (30) are not shown, even before the runtime prunes their file.
    ages = iter([timedelta(days=31), timedelta(days=29)])
    oldest = LogWriter(directory / f"{replica['id']}.log.9", clock=lambda: datetime.now(UTC) - next(ages))
    for line in ("from 31 days ago", "from 29 days ago"):
        oldest.write("stdout", f"a line {line}")
    oldest.close()
    aged = logs(search="a line from", since="2000-01-01T00:00:00Z")["lines"]
    assert [line["line"] for line in aged] == ["a line from 29 days ago"]

    # Following: the lines so far, then each new one as the replica writes it.
    followed: list[dict[str, Any]] = []
    seen_before = threading.Event()

    def follow() -> None:
        params = {"follow": "true", "search": "hello from the follower", "tail": 5}
        with httpx.stream("GET", url, params=params, headers=auth, timeout=WAIT_S) as answer:
            seen_before.set()
            for line in answer.iter_lines():
                if line.startswith("data: "):
                    followed.append(json.loads(line.removeprefix("data: ")))
                    return

    follower = threading.Thread(target=follow)
    follower.start()
    assert seen_before.wait(30)
    writer = LogWriter(directory / f"{replica['id']}.log")
    writer.write("stdout", "hello from the follower, s3cr3t-value")
    writer.close()
    follower.join(timeout=30)
    assert [event["line"] for event in followed] == ["hello from the follower, ********"]
    assert followed[0]["replica"] == replica["id"]

    # The command line shows the same lines.
    env = {**os.environ, "DAIS_URL": serve.url, "DAIS_TOKEN": ADMIN_TOKEN}
    shown = subprocess.run(
        [sys.executable, "-m", "dais", "endpoints", "logs", f"admin/{endpoint.name}", "--search", "hello from"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip().endswith(f"{replica['id']} stdout: hello from the follower, ********")

    endpoint.pause()
    wait_for(lambda: logs()["replicas"][0]["stoppedAt"], timeout=WAIT_S, what="the replica's stop recorded")
    endpoint.resume().wait(timeout=WAIT_S)
    replicas = logs()["replicas"]
    assert replicas[0]["id"] == replica["id"]  # the gone replica stays listed, first
    assert len(replicas) == 2
    assert replicas[1]["stoppedAt"] is None
    assert logs(replica=replica["id"], search="connecting with")["lines"], "the gone replica's lines stay"
    unknown = httpx.get(url, params={"replica": "nope"}, headers=auth)
    assert unknown.status_code == 400
    assert "replica" in unknown.json()["error"]
    endpoint.delete()


def test_the_replica_list_usage_and_live_feed_follow_an_endpoints_life(hf: HfApi, serve: Serve) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    watcher = Watcher(f"{serve.url}/v2/endpoint/admin")
    endpoint = deploy(hf, CHAT).wait(timeout=WAIT_S)
    mine = [e for e in watcher.events if e.get("name") == endpoint.name]
    wait_for(
        lambda: any(e["event"] == "status" and e["state"] == "running" for e in mine) or None,
        timeout=30,
        what="the running status in the live feed",
    )
    assert mine[0]["event"] == "status"
    assert mine[0]["state"] in ("pending", "initializing")
    assert chat(endpoint).status_code == 200

    def listed() -> dict[str, Any]:
        answer = httpx.get(f"{serve.url}/v2/endpoint/admin", params={"search": endpoint.name}, headers=auth)
        (item,) = answer.json()["items"]
        return dict(item)

    wait_for(lambda: listed()["status"]["lastActivity"], timeout=30, what="the last activity recorded")
    replicas_url = f"{serve.url}/v2/endpoint/admin/{endpoint.name}/replica"
    (replica,) = httpx.get(replicas_url, headers=auth).json()["items"]
    assert replica["state"] == "ready"
    assert replica["host"].startswith("127.0.0.1:")
    assert replica["stoppedAt"] is None
    logs_url = f"{serve.url}/v2/endpoint/admin/{endpoint.name}/logs"
    assert [r["id"] for r in httpx.get(logs_url, headers=auth).json()["replicas"]] == [replica["id"]]

    endpoint.pause()
    gone = wait_for(
        lambda: [r for r in httpx.get(replicas_url, headers=auth).json()["items"] if r["state"] == "gone"] or None,
        timeout=WAIT_S,
        what="the replica listed as gone",
    )
    assert gone[0]["id"] == replica["id"]
    assert gone[0]["stoppedAt"] is not None
    wait_for(
        lambda: any(e.get("name") == endpoint.name and e.get("state") == "paused" for e in watcher.events) or None,
        timeout=30,
        what="the paused status in the live feed",
    )
    usage = httpx.get(f"{serve.url}/v2/usage/admin", headers=auth).json()
    (held,) = [t for t in usage["endpoints"] if t["key"] == endpoint.name]
    assert 0 < held["replicaHours"] < 1
    assert held["cost"] == 0  # this machine's row costs nothing

    # The command line shows the same.
    def cli(*args: str) -> str:
        env = {**os.environ, "DAIS_URL": serve.url, "DAIS_TOKEN": ADMIN_TOKEN}
        shown = subprocess.run(
            [sys.executable, "-m", "dais", *args], capture_output=True, text=True, env=env, timeout=60, check=False
        )
        assert shown.returncode == 0, shown.stderr
        return shown.stdout

    (row,) = [
        line for line in cli("endpoints", "replicas", f"admin/{endpoint.name}").splitlines() if replica["id"] in line
    ]
    assert row.split()[1] == "gone"
    assert any(endpoint.name in line for line in cli("endpoints", "usage", "admin").splitlines())
    audit = cli("audit", "admin", "--endpoint", endpoint.name).splitlines()
    assert [line.split()[2] for line in audit] == ["endpoint.pause", "endpoint.create"]
    watcher.close()
    endpoint.delete()
