"""The local runtime with real inference: ``dais serve`` serving a GGUF model of a real small model's shapes.

Run from the repository root: ``.venv/bin/python benchmarks/local.py``.

It writes a Llama GGUF of realistic shapes (32,000-token vocabulary, 1,024 dimensions, 8 layers, F16: about
300 MB; random weights that always generate to ``max_tokens``), serves it from the local Hub of
tests/fixtures/hub.py, starts ``dais serve`` (local runtime) in a temporary ``DAIS_HOME``, and measures:

a. the engine alone: ``dais engine`` started by hand on the same file, from launch to ``/health`` 200 (the
   anchor of b);
b. create → first token with the model already cached, and Dais's overhead over a (what it adds on top of
   the engine's own start: the API, the reconcile, the cache check, the spawn, the probes, the gateway);
c. create → first token on an empty cache (the fetch included);
d. tokens/s of a 128-token stream through the gateway against the same engine called directly, alternated
   ``--rounds`` times, medians (goal ratio >= 0.95);
e. wake from zero → first token, with ``X-Scale-Up-Timeout``;
f. the resident memory of ``dais serve`` with 10 endpoints at zero (goal <= 300 MiB).

Stdout: one JSON object; progress on stderr. Everything started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.factories import ADMIN_TOKEN  # noqa: E402
from tests.fixtures.dais_serve import dais_serve, engine_pids, engines, ok  # noqa: E402
from tests.fixtures.hub import HubServer  # noqa: E402
from tests.fixtures.kube import wait_for  # noqa: E402
from tests.fixtures.models import realistic_llama_gguf  # noqa: E402
from tests.fixtures.postgres import free_port  # noqa: E402

MODEL = "dais-bench/llama-300m-gguf"
HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
GOAL_TOKENS_RATIO = 0.95
GOAL_OVERHEAD_S = 1.0
GOAL_IDLE_RSS_MIB = 300
STREAM_TOKENS = 128
WAIT_S = 300


def log(message: str) -> None:
    print(f"[bench-local] {message}", file=sys.stderr, flush=True)


def body(name: str, *, min_replica: int = 1) -> dict[str, Any]:
    return {
        "name": name,
        "type": "authenticated",
        "provider": {"vendor": "local", "region": "local"},
        "compute": {
            "accelerator": "cpu",
            "instanceType": "cpu",
            "instanceSize": "x1",
            "scaling": {"minReplica": min_replica, "maxReplica": 1, "scaleToZeroTimeout": None if min_replica else 15},
        },
        "model": {
            "repository": MODEL,
            "framework": "llamacpp",
            "task": "text-generation",
            "image": {"huggingface": {}},
        },
    }


def first_token_s(url: str, *, headers: dict[str, str] | None = None, started: float | None = None) -> float:
    """Seconds from ``started`` (default: now) to the first streamed token of a chat at ``url``."""
    began = started if started is not None else time.perf_counter()
    request = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4, "stream": True}
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json=request, headers={**HEADERS, **(headers or {})}, timeout=WAIT_S
    ) as answer:
        answer.raise_for_status()
        for line in answer.iter_lines():
            if '"content":"' in line:
                return time.perf_counter() - began
    raise RuntimeError("the stream ended without a token")


def tokens_per_s(url: str) -> float:
    request = {
        "messages": [{"role": "user", "content": "Tell me a story"}],
        "max_tokens": STREAM_TOKENS,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    began, tokens = time.perf_counter(), 0
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=request, headers=HEADERS, timeout=WAIT_S) as answer:
        answer.raise_for_status()
        for line in answer.iter_lines():
            if '"usage":{' in line:
                tokens = json.loads(line.removeprefix("data: "))["usage"]["completion_tokens"]
    return tokens / (time.perf_counter() - began)


def state(api: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = httpx.get(f"{api}/v2/endpoint/admin/{name}", headers=HEADERS).json()["status"]
    return status


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def engine_alone(model: Path) -> float:
    """Launch → /health 200 of ``dais engine`` on ``model``, run by hand."""
    port = free_port()
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "dais", "engine", "--model", str(model), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: ok(f"http://127.0.0.1:{port}/health"), timeout=WAIT_S, what="the engine", interval=0.02)
        return time.perf_counter() - began
    finally:
        process.terminate()
        process.wait(timeout=30)


def create_to_first_token(api: str, gateway: str, name: str) -> float:
    began = time.perf_counter()
    created = httpx.post(f"{api}/v2/endpoint/admin", json=body(name), headers=HEADERS)
    created.raise_for_status()
    wait_for(lambda: state(api, name)["state"] == "running", timeout=WAIT_S, what=f"{name} running", interval=0.02)
    return first_token_s(f"{gateway}/admin/{name}", started=began)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--layers", type=int, default=8, help="model layers (8: about 300 MB)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dais-bench-local-"))
    figures: dict[str, Any] = {}
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        log("writing the model")
        weights = realistic_llama_gguf(work / "model" / "model.gguf", layers=args.layers)
        figures["model_mib"] = round(weights.stat().st_size / 2**20)
        hub = stack.enter_context(HubServer())
        hub.add_model(MODEL, {"model.gguf": weights}, pipeline_tag="text-generation", library_name="gguf")

        log("the engine alone, started by hand")
        alone = statistics.median(engine_alone(weights) for _ in range(3))
        figures["engine_alone_start_s"] = round(alone, 2)

        home = work / "home"
        home.mkdir()
        serve = stack.enter_context(dais_serve(hub, home, DAIS_LOG_JSON="true"))
        api, gateway = serve.url, serve.gateway

        log("create → first token, empty cache (the fetch included)")
        figures["create_to_first_token_uncached_s"] = round(create_to_first_token(api, gateway, "cold"), 2)
        httpx.delete(f"{api}/v2/endpoint/admin/cold", headers=HEADERS).raise_for_status()
        wait_for(lambda: not engine_pids(home), timeout=60, what="the first endpoint's engine to stop")

        log("create → first token, cached model")
        cached = [create_to_first_token(api, gateway, f"warm-{i}") for i in range(3)]
        for i in range(3):
            httpx.delete(f"{api}/v2/endpoint/admin/warm-{i}", headers=HEADERS).raise_for_status()
        wait_for(lambda: not engine_pids(home), timeout=60, what="the engines to stop")
        figures["create_to_first_token_cached_s"] = round(statistics.median(cached), 2)
        figures["dais_start_overhead_s"] = round(statistics.median(cached) - alone, 2)
        figures["goal_dais_start_overhead_s"] = GOAL_OVERHEAD_S

        log("tokens/s through the gateway and directly")
        create_to_first_token(api, gateway, "speed")
        ((argv),) = engines(home).values()
        port = int(argv[argv.index("--port") + 1])
        through, direct = [], []
        for _ in range(args.rounds):
            through.append(tokens_per_s(f"{gateway}/admin/speed"))
            direct.append(tokens_per_s(f"http://127.0.0.1:{port}"))
        figures["gateway_tokens_per_s"] = round(statistics.median(through), 1)
        figures["direct_tokens_per_s"] = round(statistics.median(direct), 1)
        figures["gateway_vs_direct_tokens_ratio"] = round(statistics.median(through) / statistics.median(direct), 3)
        figures["goal_gateway_vs_direct_tokens_ratio"] = GOAL_TOKENS_RATIO

        log("wake from zero → first token")
        httpx.delete(f"{api}/v2/endpoint/admin/speed", headers=HEADERS).raise_for_status()
        wait_for(lambda: not engine_pids(home), timeout=60, what="the engine to stop")
        httpx.post(f"{api}/v2/endpoint/admin", json=body("sleepy", min_replica=0), headers=HEADERS).raise_for_status()
        wakes = []
        for _ in range(3):
            wait_for(lambda: state(api, "sleepy")["state"] == "running", timeout=WAIT_S, what="running", interval=0.05)
            httpx.post(f"{api}/v2/endpoint/admin/sleepy/scale-to-zero", headers=HEADERS).raise_for_status()
            wait_for(lambda: not engine_pids(home), timeout=60, what="scaled to zero", interval=0.05)
            wakes.append(first_token_s(f"{gateway}/admin/sleepy", headers={"X-Scale-Up-Timeout": str(WAIT_S)}))
        figures["wake_to_first_token_s"] = round(statistics.median(wakes), 2)

        log("dais serve's memory with 10 endpoints at zero")
        httpx.post(f"{api}/v2/endpoint/admin/sleepy/scale-to-zero", headers=HEADERS).raise_for_status()
        for i in range(10):
            httpx.post(f"{api}/v2/endpoint/admin", json=body(f"idle-{i}", min_replica=0), headers=HEADERS)
            httpx.post(f"{api}/v2/endpoint/admin/idle-{i}/scale-to-zero", headers=HEADERS).raise_for_status()
        wait_for(lambda: not engine_pids(home), timeout=120, what="every endpoint at zero")
        figures["serve_rss_10_idle_endpoints_mib"] = round(rss_mib(serve.process.pid))
        figures["goal_serve_rss_10_idle_endpoints_mib"] = GOAL_IDLE_RSS_MIB
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
