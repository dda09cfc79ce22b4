"""``GET /v2/recommendation``: the hardware rows that hold a model, cheapest first."""

from __future__ import annotations

from pydantic import Field

from api.schemas import Out
from core.domain.enums import Accelerator


class RecommendedRow(Out):
    id: str
    vendor: str
    region: str
    accelerator: Accelerator
    instance_type: str
    instance_size: str
    num_accelerators: int
    memory_bytes: int = Field(description="The memory the model may use on this row (GPU memory, or RAM on CPU).")
    price_per_hour: float


class Recommendation(Out):
    repository: str
    revision: str = Field(description="The commit sha the answer is about.")
    task: str | None
    library: str | None = Field(description="The Hub's library_name (transformers, gguf, …).")
    gated: bool = Field(description="Whether the model is gated on the Hub (it needs a token with access).")
    engine: str = Field(
        description="The model.image variant suggested: llamacpp for a repository of GGUF files, else the engine "
        "Dais runs for the task on the cheapest row that holds it (the huggingface toolkit when none is specific)."
    )
    weight_bytes: int
    weight_source: str = Field(description="Where the weight size came from (safetensors metadata, file sizes).")
    needed_bytes: int = Field(description="Weights plus headroom.")
    headroom: float
    gguf_file: str | None = Field(description="The GGUF file chosen, for a repository of GGUF files only.")
    items: list[RecommendedRow]
