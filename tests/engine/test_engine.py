"""``dais engine`` on tiny real models made here: real inference through the real OpenAI and Hugging Face
clients, the TGI and TEI routes, the queue, the metrics and the spans."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import InferenceClient
from openai import OpenAI

from tests.fixtures.dais_engine import DaisEngine
from tests.fixtures.kube import wait_for
from tests.fixtures.models import tiny_llama_gguf
from tests.fixtures.scrape import value


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_llama_gguf(tmp_path_factory.mktemp("models") / "tiny-chat" / "model.gguf")


@pytest.fixture(scope="module")
def engine(model: Path) -> Iterator[DaisEngine]:
    with DaisEngine(model.parent, "--model-id", "tiny-chat", "--max-queue", "0") as running:
        yield running


@pytest.fixture(scope="module")
def embedder(model: Path) -> Iterator[DaisEngine]:
    with DaisEngine(model, "--task", "sentence-embeddings") as running:
        yield running


def counter(engine: DaisEngine, name: str, **labels: str) -> float:
    return value(httpx.get(engine.url + "/metrics").text, name, **labels) or 0.0


def test_the_openai_client_chats_and_streams_with_token_usage(engine: DaisEngine) -> None:
    client = OpenAI(base_url=engine.url + "/v1", api_key="unused")
    prompt_before = counter(engine, "llm_prompt_tokens_total")
    answer = client.chat.completions.create(
        model="tiny-chat", messages=[{"role": "user", "content": "hello"}], max_tokens=8
    )
    assert answer.model == "tiny-chat"
    assert answer.choices[0].message.content
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 8  # the tiny model never ends early: it runs to max_tokens
    pieces, usage = [], None
    for chunk in client.chat.completions.create(
        model="tiny-chat",
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert len(pieces) == 6
    assert usage is not None
    assert usage.completion_tokens == 6
    assert (
        counter(engine, "llm_prompt_tokens_total") == prompt_before + answer.usage.prompt_tokens + usage.prompt_tokens
    )


def test_a_stream_without_include_usage_carries_none_but_is_still_counted(engine: DaisEngine) -> None:
    before = counter(engine, "llm_completion_tokens_total")
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": True}
    with httpx.stream("POST", engine.url + "/v1/chat/completions", json=body) as answer:
        events = [line.removeprefix("data: ") for line in answer.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert not any("usage" in json.loads(event) for event in events[:-1])
    assert counter(engine, "llm_completion_tokens_total") == before + 5


def test_huggingface_hub_streams_chat_and_tgi_text_generation(engine: DaisEngine) -> None:
    client = InferenceClient(base_url=engine.url)
    chat = [
        chunk.choices[0].delta.content
        for chunk in client.chat_completion(messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True)
        if chunk.choices and chunk.choices[0].delta.content
    ]
    assert len(chat) == 4
    generated = client.text_generation("The quick", max_new_tokens=5, details=True)
    assert generated.details is not None
    assert generated.details.generated_tokens == 5
    assert generated.details.finish_reason == "length"
    streamed = list(client.text_generation("The quick", max_new_tokens=3, stream=True, details=True))
    assert len(streamed) == 3
    assert streamed[-1].generated_text == "".join(event.token.text for event in streamed)
    assert streamed[-1].details is not None


def test_info_says_which_device_and_why(engine: DaisEngine) -> None:
    info = httpx.get(engine.url + "/info").json()
    assert info["model_id"] == "tiny-chat"
    assert info["backend"] == "llama.cpp"
    assert info["model_device_type"] == "cpu"
    assert info["device_reason"].startswith("CPU (")  # with why no GPU: no driver here


def test_plain_completions_and_the_model_list(engine: DaisEngine) -> None:
    client = OpenAI(base_url=engine.url + "/v1", api_key="unused")
    assert [m.id for m in client.models.list()] == ["tiny-chat"]
    answer = client.completions.create(model="tiny-chat", prompt="Once upon a time", max_tokens=4)
    assert answer.choices[0].text
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 4


def test_embeddings_through_openai_tei_and_huggingface_hub(embedder: DaisEngine) -> None:
    client = OpenAI(base_url=embedder.url + "/v1", api_key="unused")
    vectors = client.embeddings.create(model="tiny", input=["the quick fox", "a lazy dog"]).data
    assert [len(v.embedding) for v in vectors] == [64, 64]
    assert vectors[0].embedding != vectors[1].embedding
    tei = httpx.post(embedder.url + "/embed", json={"inputs": ["the quick fox"]}).json()
    assert tei[0] == pytest.approx(vectors[0].embedding, abs=1e-5)
    features = InferenceClient(base_url=embedder.url).feature_extraction("the quick fox")
    assert list(features.flatten()) == pytest.approx(vectors[0].embedding, abs=1e-5)


def test_a_generation_engine_refuses_embeddings_with_what_to_do(engine: DaisEngine) -> None:
    answer = httpx.post(engine.url + "/v1/embeddings", json={"input": "x"})
    assert answer.status_code == 400
    assert "embedding task" in answer.json()["error"]["message"]


def test_one_request_at_a_time_and_past_the_queue_503_with_retry_after(engine: DaisEngine) -> None:
    failures = counter(engine, "llm_failures_total", route="chat")
    long = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1500, "stream": True}
    first_chunk = threading.Event()
    release = threading.Event()

    def hold_a_slot() -> None:
        with httpx.stream("POST", engine.url + "/v1/chat/completions", json=long, timeout=60) as answer:
            for _ in answer.iter_lines():
                first_chunk.set()
                release.wait(30)
                return  # leaves mid-stream: the engine cancels the generation and frees the slot

    holder = threading.Thread(target=hold_a_slot)
    holder.start()
    try:
        assert first_chunk.wait(30)
        busy = httpx.post(engine.url + "/v1/chat/completions", json={**long, "stream": False, "max_tokens": 2})
        assert busy.status_code == 503
        assert int(busy.headers["retry-after"]) >= 1
        assert "busy" in busy.json()["error"]["message"]
        assert counter(engine, "llm_requests_running") == 1
    finally:
        release.set()
        holder.join()
    short = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    wait_for(
        lambda: httpx.post(engine.url + "/v1/chat/completions", json=short).status_code == 200,
        timeout=30,
        what="the slot freed by the client that left",
    )
    assert counter(engine, "llm_failures_total", route="chat") == failures + 1


def test_bad_requests_name_the_problem(engine: DaisEngine) -> None:
    not_json = httpx.post(engine.url + "/v1/chat/completions", content=b"{nope")
    assert not_json.status_code == 400
    assert "not JSON" in not_json.json()["error"]["message"]
    no_messages = httpx.post(engine.url + "/v1/chat/completions", json={"max_tokens": 2})
    assert no_messages.status_code == 400
    assert "messages" in no_messages.json()["error"]["message"]
    tgi = httpx.post(engine.url + "/generate", json={"parameters": {}})
    assert tgi.status_code == 422
    assert "inputs" in tgi.json()["error"]["message"]


def test_every_completion_and_probe_is_a_span_with_its_tokens(engine: DaisEngine) -> None:
    httpx.post(engine.url + "/generate", json={"inputs": "hello", "parameters": {"max_new_tokens": 3}})
    assert httpx.get(engine.url + "/health").status_code == 200

    def spans() -> list[dict[str, object]]:
        lines = [json.loads(line) for line in engine.output().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("logger") == "dais.engine.span"]

    generate = wait_for(
        lambda: [s for s in spans() if s.get("route") == "generate" and s.get("completionTokens") == 3],
        timeout=10,
        what="the generate span",
    )
    assert generate[-1]["promptTokens"]
    assert any(s["span"] == "health" for s in spans())


def test_a_model_that_cannot_load_exits_with_why(tmp_path: Path) -> None:
    broken = tmp_path / "broken" / "model.gguf"
    broken.parent.mkdir()
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    engine = DaisEngine(broken.parent, wait=False)
    try:
        assert engine.process.wait(timeout=60) == 1
        assert "could not load model.gguf" in engine.output()
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("files", "named"),
    [
        ({"config.json": '{"architectures": ["LlamaForCausalLM"]}', "model.safetensors": ""}, "mistral.rs"),
        ({"config.json": '{"architectures": ["BertModel"]}', "model.safetensors": ""}, "deploy a GGUF"),
    ],
)
def test_models_no_installed_backend_serves_name_what_to_do(tmp_path: Path, files: dict[str, str], named: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    direct = DaisEngine(tmp_path, wait=False)
    try:
        assert direct.process.wait(timeout=60) == 1
        assert named in direct.output()
    finally:
        direct.close()
