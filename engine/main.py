"""``dais engine``: load one model directory with the backend its files call for, and serve it.

Backends, chosen from the files: a GGUF → llama.cpp in process (``xllamacpp``); safetensors of a causal LM
(Llama, Mistral, Qwen, Gemma, Phi …) → mistral.rs in process (``mistralrs``); any other model (transformers
pipelines are to come) makes the engine exit saying what to deploy instead.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from engine.app import Served, create_app
from engine.backend import EMBEDDING_TASKS, Backend, ModelError, ModelFiles
from engine.device import Device, choose
from engine.gate import Gate

log = logging.getLogger("dais.engine")


@dataclass(frozen=True, slots=True)
class EngineOptions:
    model: Path
    model_id: str | None = None
    task: str = "text-generation"
    host: str = "127.0.0.1"
    port: int = 8080
    max_concurrency: int = 1
    max_queue: int = 32
    threads: int | None = None  # default: cores - 1
    context_tokens: int = 4096  # per request slot
    device: str | None = None

    @property
    def served_name(self) -> str:
        return self.model_id or self.model.name

    @property
    def thread_count(self) -> int:
        # On small machines a thread per core starves the server's own threads: llama.cpp's spinning barriers
        # made two threads on two cores about 10× slower than one.
        return self.threads or max(1, (os.cpu_count() or 2) - 1)


def load(options: EngineOptions) -> tuple[Backend, Device]:
    files = ModelFiles.find(options.model)
    if files.kind == "gguf":
        assert files.weights is not None
        try:
            import xllamacpp
        except ImportError as exc:
            raise ModelError("GGUF models need the xllamacpp package: pip install xllamacpp") from exc
        from engine.llamacpp import LlamaCpp

        device = choose(backend="xllamacpp", supports=_llamacpp_devices(xllamacpp), wanted=options.device)
        backend: Backend = LlamaCpp(
            files.weights,
            threads=options.thread_count,
            context_tokens=options.context_tokens * options.max_concurrency,
            parallel=options.max_concurrency,
            embedding=options.task in EMBEDDING_TASKS,
            gpu=device.gpu,
        )
        return backend, device
    if files.kind == "safetensors-causal-lm":
        assert files.architecture is not None
        try:
            import mistralrs  # noqa: F401
        except ImportError as exc:
            raise ModelError("safetensors causal LMs need the mistralrs package: pip install mistralrs") from exc
        from engine.mistralrs import MistralRs

        # The CPU wheel: mistral.rs's CUDA and Metal builds are other packages (mistralrs-cuda, mistralrs-metal).
        device = choose(backend="mistralrs", supports=frozenset({"cpu"}), wanted=options.device)
        return MistralRs(files.directory, architecture=files.architecture, max_seqs=options.max_concurrency), device
    what = files.architecture or "no recognised weights"
    raise ModelError(
        f"{options.model} ({what}, task {options.task}) is neither a GGUF nor a safetensors causal LM, and Dais's "
        "engine serves no other model yet (transformers pipelines are to come): deploy a GGUF of the model, or "
        "run Dais on Kubernetes with an engine image for it (TEI, vLLM, TGI)"
    )


def _llamacpp_devices(xllamacpp: object) -> frozenset[str]:
    """The devices the installed llama.cpp was built for, from its backends' names."""
    supported = {"cpu"}
    for entry in xllamacpp.get_device_info():  # type: ignore[attr-defined]
        name = f"{entry.get('name', '')} {entry.get('description', '')}".lower()
        if "cuda" in name:
            supported.add("cuda")
        elif "metal" in name or "mtl" in name:
            supported.add("metal")
    return frozenset(supported)


def serve(options: EngineOptions) -> int:
    """Listens at once (``/health`` says "loading"), loads the model in a thread, serves until stopped.
    Returns the exit code: 1 when the model could not be loaded."""
    import uvicorn

    served = Served(
        model_id=options.served_name,
        gate=Gate(max_concurrency=options.max_concurrency, max_queue=options.max_queue),
        device="unknown",
        embedding=options.task in EMBEDDING_TASKS,
    )
    config = uvicorn.Config(
        create_app(served),
        host=options.host,
        port=options.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    server = uvicorn.Server(config)

    def loading() -> None:
        try:
            backend, device = load(options)
        except (ModelError, ValueError) as exc:
            served.failed = str(exc)
            log.error("cannot serve %s: %s", options.model, exc)
            server.should_exit = True
            return
        served.device, served.device_why = device.kind, device.why
        served.backend = backend
        log.info(
            "serving %s with %s on %s, %d thread(s), %d request(s) at a time",
            options.served_name,
            backend.name,
            device.why,
            options.thread_count,
            options.max_concurrency,
        )

    threading.Thread(target=loading, name="load-model", daemon=True).start()
    server.run()
    if served.backend is not None:
        served.backend.close()
    return 1 if served.failed else 0
