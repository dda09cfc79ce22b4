"""``dais engine``'s HTTP server: one model, the routes of OpenAI, TGI and TEI, ``/health`` and ``/metrics``.

The server listens at once and answers ``/health`` 503 ("loading") until the model is loaded in a thread, so
whoever started it can watch it come up; a load that fails keeps answering 503 with the reason, and the
process exits with it.

Every generating request takes a slot of the ``Gate`` first (default one at a time; a bounded queue; 503 with
``Retry-After`` past it), runs in a worker thread, and keeps its slot until the model stops generating for it,
also when the client leaves mid-stream (generation is cancelled at the next token). Each completion is logged
as one span (route, status, queueing and total time, tokens in and out) and counted in ``/metrics``; each
probe of ``/health`` is a span too.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from engine.backend import Backend, BackendError, OnChunk
from engine.gate import Busy, Gate
from engine.metrics import EngineMetrics

log = logging.getLogger("dais.engine")
spans = logging.getLogger("dais.engine.span")

TGI_DEFAULT_NEW_TOKENS = 100


@dataclass
class Served:
    """The engine's state, shared by its routes."""

    model_id: str
    gate: Gate
    device: str
    device_why: str = ""  # why this device: a CPU fallback says why no GPU was used
    embedding: bool = False  # an embedding model: ``POST /`` is TEI's embed, else TGI's generate
    backend: Backend | None = None  # None while loading
    failed: str | None = None  # why the load failed
    version: str = "0.1.0"
    metrics: EngineMetrics = field(init=False)
    # The threads that call the model: one per slot (and one spare), so that no slot waits for a thread; the
    # event loop's default pool has min(32, cores + 4), fewer than a large MAX_CONCURRENCY on a small machine.
    calls: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.calls = ThreadPoolExecutor(max_workers=self.gate.max_concurrency + 1, thread_name_prefix="model")
        self.metrics = EngineMetrics(
            running=lambda: self.gate.running,
            waiting=lambda: self.gate.waiting,
            busy=self.gate.busy_seconds,
            slots=self.gate.max_concurrency,
        )


class Problem(Exception):
    def __init__(self, status: int, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _problem_response(problem: Problem) -> Response:
    headers = {"Retry-After": str(problem.retry_after)} if problem.retry_after is not None else None
    body = {"error": {"message": problem.message, "code": problem.status}}
    return json_response(body, problem.status, headers)


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise Problem(400, "the body must be a JSON object")
    return body


class Exchange:
    """One generating request: its slot, its thread, its span."""

    def __init__(self, served: Served, route: str) -> None:
        self.served = served
        self.route = route
        self.arrived = time.monotonic()
        self.granted: float | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        served.metrics.requests.labels(route).inc()

    @property
    def backend(self) -> Backend:
        backend = self.served.backend
        if backend is None:
            raise Problem(503, self.served.failed or "the model is still loading", retry_after=5)
        return backend

    async def start(self) -> Backend:
        backend = self.backend
        try:
            self.granted = await self.served.gate.acquire()
        except Busy as busy:
            raise Problem(503, "the model is busy: retry later", retry_after=busy.retry_after_s) from None
        return backend

    def counted(self, usage: dict[str, Any] | None) -> None:
        if usage:
            self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.completion_tokens = int(usage.get("completion_tokens") or 0)

    def finish(self, status: int) -> None:
        """Frees the slot (on the event loop) and records the span."""
        if self.granted is not None:
            self.served.gate.release(self.granted)
        metrics = self.served.metrics
        total_ms = (time.monotonic() - self.arrived) * 1000
        metrics.duration.labels(self.route).observe(total_ms)
        if status >= 500:
            metrics.failures.labels(self.route).inc()
        metrics.prompt_tokens.inc(self.prompt_tokens)
        metrics.completion_tokens.inc(self.completion_tokens)
        queued_ms = ((self.granted or time.monotonic()) - self.arrived) * 1000
        spans.info(
            "completion",
            extra={
                "span": "completion",
                "route": self.route,
                "status": status,
                "queuedMs": round(queued_ms, 1),
                "durationMs": round(total_ms, 1),
                "promptTokens": self.prompt_tokens,
                "completionTokens": self.completion_tokens,
            },
        )

    async def whole(
        self, call: Callable[[dict[str, Any], OnChunk | None], dict[str, Any] | None], body: dict[str, Any]
    ) -> dict[str, Any]:
        """A non-streaming call in a worker thread, holding a slot."""
        await self.start()
        status = 500
        try:
            answer = await asyncio.get_running_loop().run_in_executor(self.served.calls, call, body, None)
            assert answer is not None
            self.counted(answer.get("usage"))
            status = 200
            return answer
        except BackendError as exc:
            status = exc.status
            raise Problem(exc.status, exc.message) from exc
        finally:
            self.finish(status)

    async def stream(
        self,
        call: Callable[[dict[str, Any], OnChunk | None], dict[str, Any] | None],
        body: dict[str, Any],
        render: Callable[[dict[str, Any]], list[bytes]],
        *,
        last: Callable[[], list[bytes]] = list,
    ) -> StreamingResponse:
        """A streaming call: chunks go from the generating thread to the client as ``render`` makes them."""
        await self.start()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | BackendError | None] = asyncio.Queue()
        gone = threading.Event()
        outcome = {"status": 200}

        def on_chunk(chunk: dict[str, Any]) -> bool:
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            return gone.is_set()

        def generate() -> None:
            end: BackendError | None = None
            try:
                call(body, on_chunk)
            except BackendError as exc:
                end = exc
            except Exception as exc:
                end = BackendError(500, f"generation failed: {exc}")
            loop.call_soon_threadsafe(queue.put_nowait, end)

        def done(_: asyncio.Future[None]) -> None:
            self.finish(outcome["status"])

        loop.run_in_executor(self.served.calls, generate).add_done_callback(done)

        async def events() -> AsyncIterator[bytes]:
            try:
                while True:
                    item = await queue.get()
                    if item is None:
                        for line in last():
                            yield line
                        return
                    if isinstance(item, BackendError):
                        outcome["status"] = item.status
                        log.warning("%s: stream ended by an error: %s", self.route, item.message)
                        yield (
                            b"data: "
                            + orjson.dumps({"error": {"message": item.message, "code": item.status}})
                            + b"\n\n"
                        )
                        return
                    if item.get("usage"):
                        self.counted(item["usage"])
                    for line in render(item):
                        yield line
            finally:
                gone.set()  # the client left (or the stream ended): stop generating at the next token

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


Handler = Callable[[Request, Exchange], Awaitable[Response]]


def _exchanged(
    served: Served, route: Callable[[Request], str], handler: Handler
) -> Callable[[Request], Awaitable[Response]]:
    """A generating route: its exchange is counted from arrival, and a refusal before it got a slot is too."""

    async def endpoint(request: Request) -> Response:
        exchange = Exchange(served, route(request))
        try:
            return await handler(request, exchange)
        except Problem as problem:
            if exchange.granted is None:
                exchange.finish(problem.status)
            return _problem_response(problem)

    return endpoint


def create_app(served: Served) -> Starlette:
    def sse(chunk: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def named(chunk: dict[str, Any]) -> dict[str, Any]:
        chunk["model"] = served.model_id  # llama.cpp puts its file path there
        chunk.pop("timings", None)
        return chunk

    async def health(_: Request) -> Response:
        started = time.monotonic()
        if served.backend is None:
            why = served.failed or "loading the model"
            status, body = 503, {"status": "failed" if served.failed else "loading", "message": why}
        else:
            status, body = 200, {"status": "ok"}
        spans.info(
            "health",
            extra={"span": "health", "status": status, "durationMs": round((time.monotonic() - started) * 1000, 3)},
        )
        return json_response(body, status)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(served.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def info(_: Request) -> Response:
        backend = served.backend
        return json_response(
            {
                "model_id": served.model_id,
                "model_device_type": served.device,
                "device_reason": served.device_why,
                "max_concurrent_requests": served.gate.max_concurrency,
                "max_total_tokens": backend.context_tokens // served.gate.max_concurrency if backend else None,
                "backend": backend.name if backend else None,
                "router": "dais-engine",
                "version": served.version,
            }
        )

    async def models(_: Request) -> Response:
        entry = {"id": served.model_id, "object": "model", "created": 0, "owned_by": "dais"}
        return json_response({"object": "list", "data": [entry]})

    def openai(pick: Callable[[Backend], Callable[..., dict[str, Any] | None]]) -> Handler:
        async def handler(request: Request, exchange: Exchange) -> Response:
            body = await _body(request)
            call = pick(exchange.backend)
            if not body.get("stream"):
                return json_response(named(await exchange.whole(call, body)))
            wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}

            def render(chunk: dict[str, Any]) -> list[bytes]:
                if not wants_usage and not chunk.get("choices") and chunk.get("usage"):
                    return []  # asked for internally, for the token counts
                if not wants_usage:
                    chunk.pop("usage", None)
                return [sse(named(chunk))]

            return await exchange.stream(call, body, render, last=lambda: [b"data: [DONE]\n\n"])

        return handler

    async def embeddings(request: Request, exchange: Exchange) -> Response:
        body = await _body(request)
        backend = exchange.backend
        answer = await exchange.whole(lambda b, _: backend.embed(b), body)
        answer["model"] = served.model_id
        return json_response(answer)

    async def tei_embed(request: Request, exchange: Exchange) -> Response:
        body = await _body(request)
        inputs = body.get("inputs")
        if not isinstance(inputs, (str, list)) or not inputs:
            raise Problem(422, "inputs: a string or a list of strings is required")
        backend = exchange.backend
        answer = await exchange.whole(lambda b, _: backend.embed(b), {"input": inputs})
        return json_response([item["embedding"] for item in sorted(answer["data"], key=lambda d: d["index"])])

    async def tgi(request: Request, exchange: Exchange) -> Response:
        body = await _body(request)
        inputs = body.get("inputs")
        if not isinstance(inputs, str):
            raise Problem(422, "inputs: a string prompt is required")
        parameters = body.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise Problem(422, "parameters: must be an object")
        prompt = _tgi_completion(inputs, parameters)
        backend = exchange.backend
        prefix = inputs if parameters.get("return_full_text") else ""
        if exchange.route == "generate_stream" or body.get("stream"):
            prompt["stream"] = True
            return await exchange.stream(backend.complete, prompt, _tgi_events(prefix, parameters))
        answer = await exchange.whole(backend.complete, prompt)
        choice = answer["choices"][0]
        usage = answer.get("usage") or {}
        generated = {
            "generated_text": prefix + choice.get("text", ""),
            "details": {
                "finish_reason": _tgi_finish(choice.get("finish_reason")),
                "generated_tokens": int(usage.get("completion_tokens") or 0),
                "seed": parameters.get("seed"),
                "prefill": [],
                "tokens": [],
            }
            if parameters.get("details")
            else None,
        }
        return json_response([generated] if request.url.path == "/" else generated)

    def named_route(name: str) -> Callable[[Request], str]:
        return lambda _: name

    def tgi_route(request: Request) -> str:
        return "generate_stream" if request.url.path == "/generate_stream" else "generate"

    chat = _exchanged(served, named_route("chat"), openai(lambda b: b.chat))
    completions = _exchanged(served, named_route("completions"), openai(lambda b: b.complete))
    embed_openai = _exchanged(served, named_route("embeddings"), embeddings)
    embed_tei = _exchanged(served, named_route("embed"), tei_embed)
    generate = _exchanged(served, tgi_route, tgi)

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/info", info, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", embed_openai, methods=["POST"]),
        Route("/embed", embed_tei, methods=["POST"]),
        Route("/generate", generate, methods=["POST"]),
        Route("/generate_stream", generate, methods=["POST"]),
        Route("/", embed_tei if served.embedding else generate, methods=["POST"]),
    ]
    return Starlette(routes=routes)


def _tgi_completion(inputs: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """TGI's generate parameters as an OpenAI completion request."""
    request: dict[str, Any] = {
        "prompt": inputs,
        "max_tokens": int(parameters.get("max_new_tokens") or TGI_DEFAULT_NEW_TOKENS),
    }
    if parameters.get("do_sample") is False or (
        parameters.get("temperature") is None and not parameters.get("do_sample")
    ):
        request["temperature"] = 0.0
    for tgi_name, openai_name in (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("top_k", "top_k"),
        ("seed", "seed"),
        ("repetition_penalty", "repeat_penalty"),
        ("stop", "stop"),
    ):
        if parameters.get(tgi_name) is not None:
            request[openai_name] = parameters[tgi_name]
    return request


def _tgi_finish(reason: str | None) -> str:
    return {"length": "length", "stop": "eos_token"}.get(reason or "", "eos_token")


def _tgi_events(prefix: str, parameters: dict[str, Any]) -> Callable[[dict[str, Any]], list[bytes]]:
    """Renders completion chunks as TGI's stream: one event per token, the last one carrying the whole text and
    the details. llama.cpp ends with a chunk holding only the finish reason, so each token waits for the next
    chunk to know whether it is the last."""
    index = 0
    text_so_far = prefix
    held: str | None = None  # the newest token's text, not yet sent

    def event(text: str, finish: str | None, usage: dict[str, Any]) -> bytes:
        nonlocal index
        body = {
            "index": index,
            "token": {"id": index, "text": text, "logprob": 0.0, "special": False},
            "generated_text": text_so_far if finish else None,
            "details": {
                "finish_reason": _tgi_finish(finish),
                "generated_tokens": int(usage.get("completion_tokens") or index + 1),
                "seed": parameters.get("seed"),
            }
            if finish
            else None,
        }
        index += 1
        return b"data:" + orjson.dumps(body) + b"\n\n"

    def render(chunk: dict[str, Any]) -> list[bytes]:
        nonlocal text_so_far, held
        choices = chunk.get("choices") or []
        if not choices:
            return []
        text = choices[0].get("text") or ""
        finish = choices[0].get("finish_reason")
        out = []
        if held is not None and (text or finish):
            last = finish is not None and not text
            out.append(event(held, finish if last else None, chunk.get("usage") or {}))
            held = None
            if last:
                return out
        text_so_far += text
        if finish:
            out.append(event(text, finish, chunk.get("usage") or {}))
        elif text:
            held = text
        return out

    return render
