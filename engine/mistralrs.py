"""Safetensors causal LMs (Llama, Mistral, Qwen, Gemma, Phi …) through mistral.rs, in process (the ``mistralrs``
wheel), offline, from the model directory alone.

Invariants:

* The binding's ``Runner`` is not re-entrant: a call while another is inside it raises ``RuntimeError("Already
  borrowed")``. Every call into it holds ``_lock``. A chat holds it only to start its stream: the streamer it gets
  back is read without the runner, so up to ``max_seqs`` chats generate together, batched by mistral.rs.
* Chats always stream inside, also when the client wants one answer (assembled here), so that no chat holds the
  runner while it generates. The exception is ``n`` > 1, which the binding's stream gets wrong (it drops the last
  chunk of every choice but the first): those answer whole, hold the runner, and cannot stream.
* Dropping a streamer stops its generation (mistral.rs ends a sequence whose receiver is gone), which is how
  ``on_chunk`` returning True stops one: the streamer lives only in ``_stream``'s frame and is deleted on the way
  out.
* Plain completions have no stream in the binding: they generate whole, holding the runner, and a streamed one is
  then cut at token boundaries into chunks; a client leaving stops only the sending.
* Errors are ``BackendError``: 400 for a request refused (``ValueError``: a prompt longer than the context, a bad
  parameter; and requests the binding would panic on, refused here first), 500 for any other failure.
* Answers and chunks are OpenAI's shapes as plain dicts; a stream ends with the chunk carrying ``finish_reason``,
  then one with no choices and the ``usage``, as llama.cpp's does.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from engine.backend import BackendError, ModelError, OnChunk

if TYPE_CHECKING:
    import mistralrs

DEFAULT_MAX_TOKENS = 256  # as llama.cpp's: without it a request generates until the context is full
T = TypeVar("T")

# config.json "architectures" → mistralrs.Architecture member (the binding's plain text-model loaders).
ARCHITECTURES = {
    "LlamaForCausalLM": "Llama",
    "MistralForCausalLM": "Mistral",
    "MixtralForCausalLM": "Mixtral",
    "GemmaForCausalLM": "Gemma",
    "Gemma2ForCausalLM": "Gemma2",
    "PhiForCausalLM": "Phi2",
    "Phi3ForCausalLM": "Phi3",
    "PhiMoEForCausalLM": "Phi3_5MoE",
    "Qwen2ForCausalLM": "Qwen2",
    "Qwen3ForCausalLM": "Qwen3",
    "Qwen3MoeForCausalLM": "Qwen3Moe",
    "Qwen3NextForCausalLM": "Qwen3Next",
    "Starcoder2ForCausalLM": "Starcoder2",
    "DeepseekV2ForCausalLM": "DeepseekV2",
    "DeepseekV3ForCausalLM": "DeepseekV3",
    "Glm4ForCausalLM": "GLM4",
    "Glm4MoeForCausalLM": "GLM4Moe",
    "SmolLM3ForCausalLM": "SmolLm3",
    "GraniteMoeHybridForCausalLM": "GraniteMoeHybrid",
    "GptOssForCausalLM": "GptOss",
    "Lfm2ForCausalLM": "Lfm2",
    "Lfm2MoeForCausalLM": "Lfm2Moe",
}
DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter"})


class MistralRs:
    name = "mistral.rs"

    def __init__(self, directory: Path, *, architecture: str, max_seqs: int) -> None:
        member = ARCHITECTURES.get(architecture)
        if member is None:
            raise ModelError(
                f"{architecture} is not a text model mistral.rs loads from safetensors (it does "
                f"{', '.join(sorted(ARCHITECTURES))}): deploy a GGUF of the model instead"
            )
        config = _config(directory)
        # mistral.rs logs every load step at INFO through its own tracing; only its warnings belong in ours.
        os.environ.setdefault("RUST_LOG", "warn")
        import mistralrs

        self._mistralrs = mistralrs
        tokenizer = directory / "tokenizer.json"
        dtype = DTYPES.get(str(config.get("torch_dtype") or config.get("dtype") or ""), "Auto")
        # Any: the stubs type Runner's ``which`` as the Which enum, whose variants (Which.Plain) are not its members.
        which: Any = mistralrs.Which.Plain(
            model_id=str(directory),  # a local directory: the Hub is never asked
            arch=getattr(mistralrs.Architecture, member),
            tokenizer_json=str(tokenizer) if tokenizer.is_file() else None,
            dtype=getattr(mistralrs.ModelDType, dtype),
        )
        try:
            self._runner: mistralrs.Runner | None = mistralrs.Runner(
                which=which,
                token_source="none",  # noqa: S106 (not a secret: no Hugging Face token is looked for)
                max_seqs=max_seqs,
                # no seed: the binding cannot seed its CPU generator and refuses to load with one
            )
        except Exception as exc:
            raise ModelError(
                f"mistral.rs could not load {directory.name} ({architecture}): {exc}. A damaged or partial "
                "download, a variant of the architecture this mistral.rs does not know, or too little memory"
            ) from exc
        self.model = directory.name
        self._lock = threading.Lock()
        positions = int(config.get("max_position_embeddings") or self._runner.max_sequence_length() or 4096)
        # The context of all sequences together, as llama.cpp's: /info divides it by the concurrency. Each
        # sequence here may use the model's whole context.
        self.context_tokens = positions * max_seqs

    def chat(self, body: dict[str, Any], on_chunk: OnChunk | None) -> dict[str, Any] | None:
        mistralrs = self._mistralrs
        messages = _messages(body)
        sampling = _sampling(body)
        _refuse_unsupported(body)
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if sampling.get("n_choices", 1) > 1:
            if on_chunk is not None:
                raise BackendError(400, "n > 1 cannot stream with mistral.rs: ask for one choice, or no stream")
            request = mistralrs.ChatCompletionRequest(model="default", messages=messages, **sampling)
            answer = self._with_runner(lambda runner: runner.send_chat_completion_request(request))
            assert isinstance(answer, mistralrs.ChatCompletionResponse)
            return self._whole_chat(ident, created, answer)
        request = mistralrs.ChatCompletionRequest(model="default", messages=messages, stream=True, **sampling)
        chunks = self._stream(request)
        try:
            if on_chunk is None:
                return self._assembled_chat(ident, created, chunks)
            sent_role = False
            for chunk in chunks:
                for choice in chunk.choices:
                    delta: dict[str, Any] = {} if sent_role else {"role": "assistant"}
                    sent_role = True
                    if choice.delta.content is not None:
                        delta["content"] = choice.delta.content
                    if choice.delta.reasoning_content:
                        delta["reasoning_content"] = choice.delta.reasoning_content
                    openai = {"index": choice.index, "delta": delta, "logprobs": None}
                    openai["finish_reason"] = _finish(choice.finish_reason)
                    if on_chunk(self._chunk("chat.completion.chunk", ident, created, [openai])):
                        return None
                if chunk.usage is not None:
                    usage = {**self._chunk("chat.completion.chunk", ident, created, []), "usage": _usage(chunk.usage)}
                    if on_chunk(usage):
                        return None
            return None
        finally:
            chunks.close()  # drops the streamer at once, which stops the generation when the client went away

    def complete(self, body: dict[str, Any], on_chunk: OnChunk | None) -> dict[str, Any] | None:
        mistralrs = self._mistralrs
        prompt = _prompt(body)
        sampling = _sampling(body)
        _refuse_unsupported(body)
        request = mistralrs.CompletionRequest(
            model="default", prompt=prompt, echo_prompt=bool(body.get("echo")), **sampling
        )
        answer = self._with_runner(lambda runner: runner.send_completion_request(request))
        ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        choices: list[dict[str, Any]] = [
            {"index": c.index, "text": c.text, "finish_reason": _finish(c.finish_reason) or "stop", "logprobs": None}
            for c in answer.choices
        ]
        if on_chunk is None:
            return {**self._chunk("text_completion", ident, created, choices), "usage": _usage(answer.usage)}
        for choice in choices:
            pieces = self._pieces(choice["text"])
            for number, piece in enumerate(pieces):
                last = number == len(pieces) - 1
                streamed = {**choice, "text": piece, "finish_reason": choice["finish_reason"] if last else None}
                if on_chunk(self._chunk("text_completion", ident, created, [streamed])):
                    return None
        on_chunk({**self._chunk("text_completion", ident, created, []), "usage": _usage(answer.usage)})
        return None

    def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        raise BackendError(
            400, "this engine serves text generation with mistral.rs: deploy an embedding model (GGUF) for embeddings"
        )

    def close(self) -> None:
        with self._lock:
            self._runner = None  # the last reference: mistral.rs stops its engine and frees the weights

    def _with_runner(self, call: Callable[[mistralrs.Runner], T]) -> T:
        with self._lock, _refusals():
            if self._runner is None:
                raise BackendError(503, "the model is closed")
            return call(self._runner)

    def _stream(
        self, request: mistralrs.ChatCompletionRequest
    ) -> Generator[mistralrs.ChatCompletionChunkResponse, None, None]:
        """The chunks of one chat. Closing this generator drops the streamer, which stops the generation."""
        streamer = self._with_runner(lambda runner: runner.send_chat_completion_request(request))
        assert not isinstance(streamer, self._mistralrs.ChatCompletionResponse)
        try:
            while True:
                with _refusals():  # a prompt longer than the context is refused on the first read, not on sending
                    try:
                        chunk = next(streamer)
                    except StopIteration:
                        return
                yield chunk
        finally:
            del streamer  # the only reference: no traceback or caller keeps the sequence generating

    def _assembled_chat(
        self, ident: str, created: int, chunks: Iterator[mistralrs.ChatCompletionChunkResponse]
    ) -> dict[str, Any]:
        content: list[str] = []
        reasoning: list[str] = []
        finish: str | None = None
        usage: dict[str, int] = {}
        for chunk in chunks:
            for choice in chunk.choices:
                content.append(choice.delta.content or "")
                reasoning.append(choice.delta.reasoning_content or "")
                finish = _finish(choice.finish_reason) or finish
            if chunk.usage is not None:
                usage = _usage(chunk.usage)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
        if any(reasoning):
            message["reasoning_content"] = "".join(reasoning)
        whole = {"index": 0, "message": message, "finish_reason": finish or "stop", "logprobs": None}
        return {**self._chunk("chat.completion", ident, created, [whole]), "usage": usage}

    def _whole_chat(self, ident: str, created: int, answer: mistralrs.ChatCompletionResponse) -> dict[str, Any]:
        choices = []
        for choice in answer.choices:
            message: dict[str, Any] = {"role": "assistant", "content": choice.message.content or ""}
            if choice.message.reasoning_content:
                message["reasoning_content"] = choice.message.reasoning_content
            finish = _finish(choice.finish_reason) or "stop"
            choices.append({"index": choice.index, "message": message, "finish_reason": finish, "logprobs": None})
        return {**self._chunk("chat.completion", ident, created, choices), "usage": _usage(answer.usage)}

    def _pieces(self, text: str) -> list[str]:
        """``text`` cut where its tokens end, for a completion streamed after the fact. The pieces always add up
        to ``text``: a token boundary the decoder does not reproduce exactly is skipped, not invented."""
        if not text:
            return [""]
        pieces: list[str] = []
        sent = 0
        with self._lock, _refusals():
            runner = self._runner
            if runner is None:
                raise BackendError(503, "the model is closed")
            tokens = runner.tokenize_text(text, False, None)
            for end in range(1, len(tokens)):
                prefix = runner.detokenize_text(tokens[:end], False)
                # A token that ends inside a character decodes to U+FFFD: cut after the character is whole.
                if len(prefix) > sent and text.startswith(prefix) and not prefix.endswith("\ufffd"):
                    pieces.append(text[sent : len(prefix)])
                    sent = len(prefix)
        pieces.append(text[sent:])
        return pieces

    def _chunk(self, kind: str, ident: str, created: int, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": ident, "object": kind, "created": created, "model": self.model, "choices": choices}


def _config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.is_file():
        raise ModelError(f"{directory}: no config.json, so not a Hugging Face model directory (fetch it again)")
    try:
        config = json.loads(path.read_text())
    except ValueError as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise ModelError(f"{path}: not a JSON object")
    return config


@contextmanager
def _refusals() -> Iterator[None]:
    """The binding's exceptions as ``BackendError``: ``ValueError`` is its word for a request it refuses."""
    try:
        yield
    except BackendError:
        raise
    except ValueError as exc:
        raise BackendError(400, str(exc)) from exc
    except Exception as exc:
        raise BackendError(500, f"mistral.rs failed: {exc}") from exc
    except BaseException as exc:
        # A Rust panic surfaces as pyo3's PanicException, a BaseException; the runner survives it.
        if type(exc).__name__ != "PanicException":
            raise
        raise BackendError(500, f"mistral.rs failed: {exc}") from exc


def _messages(body: dict[str, Any]) -> list[dict[str, str]]:
    """OpenAI messages as the binding takes them (role and text), checked: it panics on a message without
    content and answers an empty list."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BackendError(400, "messages: a non-empty list of {role, content} objects is required")
    checked = []
    for number, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BackendError(400, f"messages[{number}]: an object with a role is required")
        content = message.get("content")
        if content is None and message["role"] != "assistant":  # only an assistant's turn may be tool calls alone
            raise BackendError(400, f"messages[{number}]: content is required")
        checked.append({"role": message["role"], "content": _text(content, number)})
    return checked


def _text(content: Any, number: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise BackendError(400, f"messages[{number}].content: this model reads text parts only")
            texts.append(part["text"])
        return "".join(texts)
    raise BackendError(400, f"messages[{number}].content: a string or a list of text parts is required")


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BackendError(400, "prompt: a string is required (one prompt per request)")
    return prompt


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    """The sampling parameters of an OpenAI request (and llama.cpp's ``repeat_penalty``, which the TGI route
    sends) as the binding's request fields."""
    wanted = body.get("max_completion_tokens", body.get("max_tokens"))
    sampling: dict[str, Any] = {
        "max_tokens": DEFAULT_MAX_TOKENS if wanted is None else _number(wanted, "max_tokens", int, minimum=1)
    }
    for key, field, minimum in (
        ("temperature", "temperature", 0.0),
        ("top_p", "top_p", 0.0),
        ("min_p", "min_p", 0.0),
        ("presence_penalty", "presence_penalty", None),  # OpenAI's penalties may be negative
        ("frequency_penalty", "frequency_penalty", None),
        ("repetition_penalty", "repetition_penalty", 0.0),
        ("repeat_penalty", "repetition_penalty", 0.0),
    ):
        if body.get(key) is not None:
            sampling[field] = _number(body[key], key, float, minimum=minimum)
    top_k = body.get("top_k")
    if top_k is not None and _number(top_k, "top_k", int) > 0:  # 0 or less: no top-k, as in llama.cpp
        sampling["top_k"] = int(top_k)
    if body.get("n") is not None:
        sampling["n_choices"] = _number(body["n"], "n", int, minimum=1)
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise BackendError(400, "stop: a string or a list of strings is required")
        if any(stops):
            sampling["stop_seqs"] = [s for s in stops if s]
    bias = body.get("logit_bias")
    if bias:
        if not isinstance(bias, dict):
            raise BackendError(400, "logit_bias: an object of token id → bias is required")
        try:
            sampling["logit_bias"] = {int(token): float(value) for token, value in bias.items()}
        except (TypeError, ValueError) as exc:
            raise BackendError(400, f"logit_bias: {exc}") from exc
    return sampling


def _number(value: Any, key: str, kind: type[int] | type[float], *, minimum: float | None = None) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
        raise BackendError(400, f"{key}: {'an integer' if kind is int else 'a number'} is required")
    if minimum is not None and value < minimum:
        raise BackendError(400, f"{key}: must be at least {minimum:g}")
    return kind(value)


def _refuse_unsupported(body: dict[str, Any]) -> None:
    """What this backend does not do, refused rather than silently ignored."""
    if body.get("tools"):
        raise BackendError(400, "tools are not served by this engine's mistral.rs backend")
    if body.get("logprobs"):
        raise BackendError(400, "logprobs are not served by this engine's mistral.rs backend")
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
        raise BackendError(400, "response_format: only text is served by this engine's mistral.rs backend")


def _finish(reason: str | None) -> str | None:
    if not reason:
        return None
    return reason if reason in FINISH_REASONS else "stop"  # mistral.rs's own reasons (canceled, …) end it too


def _usage(usage: Any) -> dict[str, int]:
    prompt, completion = int(usage.prompt_tokens), int(usage.completion_tokens)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
