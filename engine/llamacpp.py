"""GGUF models through llama.cpp, in process (the ``xllamacpp`` wheel: llama.cpp's server as a Python class).

Calls release the GIL and may come from several threads: llama.cpp batches them over ``parallel`` slots,
each with ``context_tokens / parallel`` of the context. Errors come back three ways, all turned into
``BackendError``: a ``ValueError`` for a malformed request, an ``{"error": ...}`` answer (or stream chunk)
for one llama.cpp refuses, and a ``RuntimeError`` for anything worse. An exception raised inside a stream
callback is swallowed by the binding and ends the stream, so the callback here never raises.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from engine.backend import BackendError, ModelError, OnChunk

log = logging.getLogger("dais.engine.llamacpp")

DEFAULT_MAX_TOKENS = 256  # a request without max_tokens would otherwise generate until the context is full


class LlamaCpp:
    name = "llama.cpp"

    def __init__(
        self, weights: Path, *, threads: int, context_tokens: int, parallel: int, embedding: bool, gpu: bool
    ) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(weights)
        params.n_ctx = context_tokens
        params.n_parallel = parallel
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.n_predict = DEFAULT_MAX_TOKENS
        params.warmup = False
        params.verbosity = 1  # errors only: the reason a load fails is logged, not raised
        if not gpu:
            params.n_gpu_layers = 0
        if embedding:
            params.embedding = True
            params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
        try:
            self._server = xllamacpp.Server(params)
        except RuntimeError as exc:
            raise ModelError(
                f"llama.cpp could not load {weights.name} (its log above says why): a GGUF this llama.cpp "
                f"does not support, a damaged download, or too little memory for it"
            ) from exc
        self.context_tokens = context_tokens
        self.embedding = embedding

    def chat(self, body: dict[str, Any], on_chunk: OnChunk | None) -> dict[str, Any] | None:
        return self._call(self._server.handle_chat_completions, body, on_chunk)

    def complete(self, body: dict[str, Any], on_chunk: OnChunk | None) -> dict[str, Any] | None:
        return self._call(self._server.handle_completions, body, on_chunk)

    def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        if not self.embedding:
            raise BackendError(
                400, "this engine serves text generation: deploy the model with an embedding task for embeddings"
            )
        answer = self._call(self._server.handle_embeddings, body, None)
        assert answer is not None
        return answer

    def close(self) -> None:
        del self._server

    @staticmethod
    def _call(handler: Any, body: dict[str, Any], on_chunk: OnChunk | None) -> dict[str, Any] | None:
        failure: list[BackendError] = []

        def relay(chunk: dict[str, Any]) -> bool:
            try:
                if "error" in chunk:
                    failure.append(_error(chunk))
                    return True
                return on_chunk(chunk) if on_chunk is not None else False
            except Exception as exc:  # never into the binding, which would swallow it
                failure.append(BackendError(500, f"stream ended: {exc}"))
                return True

        try:
            answer = handler(body, relay) if on_chunk is not None else handler(body)
        except ValueError as exc:
            raise BackendError(400, str(exc)) from exc
        except RuntimeError as exc:
            raise BackendError(500, f"llama.cpp failed: {exc}") from exc
        if failure:
            raise failure[0]
        if isinstance(answer, dict) and ("error" in answer or ("code" in answer and "choices" not in answer)):
            raise _error(answer)
        return answer if isinstance(answer, dict) else None


def _error(answer: dict[str, Any]) -> BackendError:
    error = answer.get("error", answer)
    if not isinstance(error, dict):
        return BackendError(500, str(error))
    code = int(error.get("code") or 500)
    return BackendError(code if 400 <= code < 600 else 500, str(error.get("message") or error))
