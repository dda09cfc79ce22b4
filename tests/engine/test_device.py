"""The device order (CUDA, then Metal, then CPU) and the reason given for a CPU fallback."""

from __future__ import annotations

import pytest

from engine import device


@pytest.fixture
def h200(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "cuda_gpus", lambda: ["NVIDIA H200"])
    monkeypatch.setattr(device, "apple_silicon", lambda: False)
    monkeypatch.delenv("DAIS_ENGINE_DEVICE", raising=False)


@pytest.mark.usefixtures("h200")
def test_cuda_comes_first_when_the_backend_was_built_for_it() -> None:
    chosen = device.choose(backend="xllamacpp", supports=frozenset({"cpu", "cuda"}))
    assert (chosen.kind, chosen.name) == ("cuda", "NVIDIA H200")


@pytest.mark.usefixtures("h200")
def test_a_gpu_the_backend_cannot_use_is_named_in_the_fallback() -> None:
    chosen = device.choose(backend="xllamacpp", supports=frozenset({"cpu"}))
    assert chosen.kind == "cpu"
    assert "NVIDIA H200" in chosen.why
    assert "built for CPU only: install its cuda build" in chosen.why


def test_no_gpu_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "cuda_gpus", list)
    monkeypatch.setattr(device, "apple_silicon", lambda: False)
    chosen = device.choose(backend="xllamacpp", supports=frozenset({"cpu", "cuda"}))
    assert chosen.kind == "cpu"
    assert "no NVIDIA driver or GPU" in chosen.why
    assert "not Apple silicon" in chosen.why


@pytest.mark.usefixtures("h200")
def test_a_forced_device_is_used_or_refused_with_why() -> None:
    assert device.choose(backend="xllamacpp", supports=frozenset({"cpu", "cuda"}), wanted="cpu").kind == "cpu"
    with pytest.raises(ValueError, match="built for CPU only"):
        device.choose(backend="xllamacpp", supports=frozenset({"cpu"}), wanted="cuda")
    with pytest.raises(ValueError, match="this machine has none"):
        device.choose(backend="xllamacpp", supports=frozenset({"cpu", "metal"}), wanted="metal")
