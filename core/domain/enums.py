from __future__ import annotations

from enum import StrEnum


class EndpointState(StrEnum):
    """The client compares these as exact camelCase strings (reference §4)."""

    PENDING = "pending"
    INITIALIZING = "initializing"
    UPDATING = "updating"
    UPDATE_FAILED = "updateFailed"
    RUNNING = "running"
    PAUSED = "paused"
    FAILED = "failed"
    SCALED_TO_ZERO = "scaledToZero"


class EndpointType(StrEnum):
    PUBLIC = "public"
    AUTHENTICATED = "authenticated"
    PRIVATE = "private"
    PROTECTED = "protected"  # legacy alias of private; stored and echoed as sent

    @property
    def effective(self) -> EndpointType:
        return EndpointType.PRIVATE if self is EndpointType.PROTECTED else self


class Accelerator(StrEnum):
    CPU = "cpu"
    GPU = "gpu"
    NEURON = "neuron"


class AccountKind(StrEnum):
    USER = "user"
    ORG = "org"


class ImageVariant(StrEnum):
    """Keys of the ``model.image`` union, with the casing the client sends."""

    HUGGINGFACE = "huggingface"
    HUGGINGFACE_NEURON = "huggingfaceNeuron"
    CUSTOM = "custom"
    TGI = "tgi"
    TGI_NEURON = "tgiNeuron"
    TEI = "tei"
    VLLM = "vLLM"
    VLLM_NEURON = "vLLMNeuron"
    SGLANG = "sGLang"
    LLAMACPP = "llamacpp"
    HF_SERVE = "hfServe"

    @property
    def needs_url(self) -> bool:
        return self is ImageVariant.CUSTOM
