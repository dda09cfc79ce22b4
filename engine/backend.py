"""What the HTTP layer needs from a model runtime, and how a model directory picks one.

Requests and answers are the OpenAI shapes (chat completions, completions, embeddings) as dicts: llama.cpp and
mistral.rs both speak them, and the TGI and TEI routes translate to them. A stream is a callback per chunk that
returns True to stop generating (the client went away).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

OnChunk = Callable[[dict[str, Any]], bool]

EMBEDDING_TASKS = frozenset({"feature-extraction", "sentence-embeddings", "sentence-similarity"})


class BackendError(Exception):
    """A request the model refused (``status`` 4xx) or could not serve (5xx), with the runtime's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ModelError(Exception):
    """The model directory cannot be served; the message says why and what to do."""


class Backend(Protocol):
    name: str
    context_tokens: int

    def chat(self, body: dict[str, Any], on_chunk: OnChunk | None) -> dict[str, Any] | None: ...

    def complete(self, body: dict[str, Any], on_chunk: OnChunk | None) -> dict[str, Any] | None: ...

    def embed(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """What a model directory holds, as far as choosing a backend goes."""

    directory: Path
    kind: str  # "gguf" | "safetensors-causal-lm" | "other"
    weights: Path | None  # the GGUF file (its first shard)
    architecture: str | None = None

    @classmethod
    def find(cls, directory: Path) -> ModelFiles:
        if directory.is_file() and directory.suffix == ".gguf":
            return cls(directory.parent, "gguf", directory)
        if not directory.is_dir():
            raise ModelError(f"{directory}: no such model directory (fetch it first: dais model fetch)")
        ggufs = sorted(p for p in directory.rglob("*.gguf") if p.is_file())
        if ggufs:
            # Sharded GGUFs are named ...-00001-of-0000N.gguf: llama.cpp opens the first and finds the rest.
            first = next((p for p in ggufs if "-00001-of-" in p.name), None)
            return cls(directory, "gguf", first or _smallest_quant(ggufs))
        config = directory / "config.json"
        architectures: list[str] = []
        if config.is_file():
            try:
                architectures = list(json.loads(config.read_text()).get("architectures") or [])
            except (ValueError, AttributeError) as exc:
                raise ModelError(f"{config}: not valid JSON ({exc})") from exc
        architecture = architectures[0] if architectures else None
        has_weights = any(directory.glob("*.safetensors"))
        # Which causal LMs mistral.rs loads is its backend's to say (engine.mistralrs.ARCHITECTURES).
        if has_weights and architecture is not None and architecture.endswith("ForCausalLM"):
            return cls(directory, "safetensors-causal-lm", None, architecture)
        return cls(directory, "other", None, architecture)


def _smallest_quant(ggufs: list[Path]) -> Path:
    """Several single-file GGUFs (one per quantization): the smallest, the one most likely to fit."""
    return min(ggufs, key=lambda p: p.stat().st_size)
