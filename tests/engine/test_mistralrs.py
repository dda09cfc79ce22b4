"""The mistral.rs backend on a tiny real safetensors Llama made here: chat and completions, whole and streamed,
stopping, refusals, several threads at once; and ``dais engine`` serving the directory to the OpenAI client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from engine.backend import BackendError, ModelError
from engine.mistralrs import MistralRs
from tests.fixtures.dais_engine import DaisEngine
from tests.fixtures.models import tiny_llama_safetensors

pytest.importorskip("mistralrs")

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_llama_safetensors(tmp_path_factory.mktemp("models") / "tiny-st")


@pytest.fixture(scope="module")
def backend(directory: Path) -> Iterator[MistralRs]:
    loaded = MistralRs(directory, architecture="LlamaForCausalLM", max_seqs=4)
    yield loaded
    loaded.close()


def collect(backend: MistralRs, call: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = []

    def on_chunk(chunk: dict[str, Any]) -> bool:
        chunks.append(chunk)
        return False

    assert getattr(backend, call)(body, on_chunk) is None
    return chunks


def test_a_whole_chat_answers_in_openai_shape_with_usage(backend: MistralRs) -> None:
    answer = backend.chat({"messages": HELLO, "max_tokens": 8, "temperature": 0}, None)
    assert answer is not None
    assert answer["object"] == "chat.completion"
    assert answer["id"].startswith("chatcmpl-")
    choice = answer["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"]
    assert choice["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 8  # the tiny model never ends early: it runs to max_tokens
    assert answer["usage"]["prompt_tokens"] > 0
    assert backend.context_tokens == 2048 * 4


def test_a_streamed_chat_is_the_whole_one_in_chunks_ending_with_usage(backend: MistralRs) -> None:
    whole = backend.chat({"messages": HELLO, "max_tokens": 6, "temperature": 0}, None)
    assert whole is not None
    chunks = collect(backend, "chat", {"messages": HELLO, "max_tokens": 6, "temperature": 0, "stream": True})
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 6


def test_plain_completions_whole_and_streamed(backend: MistralRs) -> None:
    body = {"prompt": "The quick brown", "max_tokens": 5, "temperature": 0}
    answer = backend.complete(body, None)
    assert answer is not None
    assert answer["object"] == "text_completion"
    assert answer["choices"][0]["text"]
    assert answer["usage"]["completion_tokens"] == 5
    chunks = collect(backend, "complete", {**body, "stream": True})
    pieces = [c["choices"][0]["text"] for c in chunks if c["choices"]]
    assert len(pieces) > 1
    assert "".join(pieces) == answer["choices"][0]["text"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 5


def test_on_chunk_returning_true_stops_the_generation(backend: MistralRs) -> None:
    chunks: list[dict[str, Any]] = []

    def stop_at_three(chunk: dict[str, Any]) -> bool:
        chunks.append(chunk)
        return len(chunks) >= 3

    assert backend.chat({"messages": HELLO, "max_tokens": 1000, "stream": True}, stop_at_three) is None
    assert len(chunks) == 3
    after = backend.chat({"messages": HELLO, "max_tokens": 2}, None)  # the runner is free again
    assert after is not None
    assert after["usage"]["completion_tokens"] == 2


def test_chats_from_several_threads_at_once(backend: MistralRs) -> None:
    answers: dict[int, int] = {}

    def chat(number: int) -> None:
        body = {"messages": [{"role": "user", "content": f"hi {number}"}], "max_tokens": 16}
        if number % 2:
            chunks = collect(backend, "chat", {**body, "stream": True})
            answers[number] = chunks[-1]["usage"]["completion_tokens"]
        else:
            answer = backend.chat(body, None)
            assert answer is not None
            answers[number] = answer["usage"]["completion_tokens"]

    threads = [threading.Thread(target=chat, args=(number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == dict.fromkeys(range(6), 16)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"max_tokens": 2}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user"}], "max_tokens": 2}, "content"),  # the binding would panic on it
        ({"messages": [{"content": "hi"}]}, "role"),
        ({"messages": HELLO, "max_tokens": "many"}, "max_tokens"),
        ({"messages": HELLO, "temperature": -1}, "temperature"),
        ({"messages": HELLO, "stop": 3}, "stop"),
        ({"messages": HELLO, "tools": [{"type": "function"}]}, "tools"),
        ({"messages": [{"role": "user", "content": "hello " * 3000}], "max_tokens": 2}, "length"),
        ({"messages": [{"role": "user", "content": "hello " * 3000}], "max_tokens": 2, "stream": True}, "length"),
    ],
)
def test_bad_chats_are_refused_with_400(backend: MistralRs, body: dict[str, Any], says: str) -> None:
    with pytest.raises(BackendError) as refused:
        collect(backend, "chat", body) if body.get("stream") else backend.chat(body, None)
    assert refused.value.status == 400
    assert says in refused.value.message


def test_bad_completions_are_refused_with_400(backend: MistralRs) -> None:
    for body in ({"max_tokens": 2}, {"prompt": "hello " * 3000, "max_tokens": 2}):
        with pytest.raises(BackendError) as refused:
            backend.complete(body, None)
        assert refused.value.status == 400


def test_several_choices_answer_whole_but_do_not_stream(backend: MistralRs) -> None:
    answer = backend.chat({"messages": HELLO, "max_tokens": 3, "n": 2}, None)
    assert answer is not None
    assert [choice["index"] for choice in answer["choices"]] == [0, 1]
    with pytest.raises(BackendError) as refused:
        collect(backend, "chat", {"messages": HELLO, "max_tokens": 3, "n": 2, "stream": True})
    assert refused.value.status == 400


def test_embeddings_are_refused_with_what_to_deploy(backend: MistralRs) -> None:
    with pytest.raises(BackendError) as refused:
        backend.embed({"input": "hello"})
    assert refused.value.status == 400
    assert "embedding model (GGUF)" in refused.value.message


def test_an_architecture_it_does_not_load_is_a_model_error(directory: Path) -> None:
    with pytest.raises(ModelError, match="BertForCausalLM"):
        MistralRs(directory, architecture="BertForCausalLM", max_seqs=1)


def test_damaged_weights_are_a_model_error(tmp_path: Path) -> None:
    damaged = tiny_llama_safetensors(tmp_path / "damaged")
    (damaged / "model.safetensors").write_bytes(b"\0" * 64)
    with pytest.raises(ModelError, match="could not load damaged"):
        MistralRs(damaged, architecture="LlamaForCausalLM", max_seqs=1)


def test_dais_engine_serves_safetensors_with_mistral_rs_to_the_openai_client(directory: Path) -> None:
    with DaisEngine(directory, "--model-id", "tiny-st") as engine:
        client = OpenAI(base_url=engine.url + "/v1", api_key="unused")
        pieces, usage = [], None
        for chunk in client.chat.completions.create(
            model="tiny-st",
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        ):
            assert chunk.model == "tiny-st"
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
        assert pieces
        assert usage is not None
        assert usage.completion_tokens == 6
        assert "mistral.rs" in engine.output()
