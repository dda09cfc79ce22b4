"""The engine's own plumbing between slots and the model, in process: a backend that blocks until every slot is
in it shows whether all the slots really generate at once (a real model finishes too soon to show it)."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import httpx

from engine.app import Served, create_app
from engine.backend import OnChunk
from engine.gate import Gate


class Rendezvous:
    """Answers a chat only once ``parties`` chats are inside it at the same time."""

    name = "rendezvous"
    context_tokens = 4096

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=20)

    def chat(self, body: dict[str, Any], on_chunk: OnChunk | None) -> dict[str, Any] | None:
        self.barrier.wait()
        usage = {"prompt_tokens": 1, "completion_tokens": 1}
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}}], "usage": usage}

    def complete(self, body: dict[str, Any], on_chunk: OnChunk | None) -> dict[str, Any] | None:
        raise NotImplementedError

    def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_every_slot_generates_at_once_beyond_the_default_thread_pool() -> None:
    slots = (os.cpu_count() or 1) + 6  # more than the event loop's default pool: min(32, cores + 4)
    served = Served(model_id="m", gate=Gate(max_concurrency=slots, max_queue=0), device="cpu")
    served.backend = Rendezvous(slots)

    async def all_at_once() -> list[int]:
        transport = httpx.ASGITransport(app=create_app(served))
        async with httpx.AsyncClient(transport=transport, base_url="http://engine", timeout=30) as client:
            body = {"messages": [{"role": "user", "content": "hi"}]}
            answers = await asyncio.gather(*(client.post("/v1/chat/completions", json=body) for _ in range(slots)))
        return [answer.status_code for answer in answers]

    assert asyncio.run(all_at_once()) == [200] * slots  # a slot without a thread would break the rendezvous
