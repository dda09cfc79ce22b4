"""Token counts from engine responses, read as they stream past (pure; no I/O).

OpenAI-style bodies carry ``usage.prompt_tokens`` / ``usage.completion_tokens`` (in a streamed chat, on the last
chunk that has one); TGI carries ``details.generated_tokens`` and, with decoder input details, the ``prefill``
tokens. A JSON body is kept up to ``MAX_JSON`` bytes; of an event stream only the tail is kept, since the
figures are on the last events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

MAX_JSON = 1 << 20
STREAM_TAIL = 64 << 10


@dataclass  # not frozen: mypyc builds a frozen one through object.__setattr__
class Tokens:
    prompt: int = 0
    completion: int = 0


NONE = Tokens()  # one instance: most answers carry no counts, and a frozen dataclass costs to build


class UsageReader:
    """Fed every response chunk; ``tokens()`` at the end."""

    def __init__(self, content_type: str) -> None:
        kind = content_type.split(";", 1)[0].strip().lower()
        self.stream = kind == "text/event-stream"
        self.json = kind == "application/json"
        self._buffer = bytearray()
        self._overflow = False

    @property
    def wanted(self) -> bool:
        return self.stream or self.json

    def feed(self, chunk: bytes) -> None:
        if self._overflow:
            return
        self._buffer += chunk
        if self.stream and len(self._buffer) > 2 * STREAM_TAIL:
            del self._buffer[: len(self._buffer) - STREAM_TAIL]
        elif self.json and len(self._buffer) > MAX_JSON:
            self._overflow = True
            self._buffer.clear()

    def tokens(self) -> Tokens:
        if self._overflow or not self._buffer:
            return NONE
        if self.json:
            # find(), not `in`: `bytes in bytearray` first tries the bytes as an int, and makes and drops a
            # formatted TypeError each time.
            if self._buffer.find(b'"usage"') < 0 and self._buffer.find(b'"details"') < 0:
                return NONE  # most answers (embeddings, errors) carry no counts: not worth a parse
            return _from_document(_parse(bytes(self._buffer)))
        for event in reversed(bytes(self._buffer).split(b"\n")):
            line = event.strip()
            if not line.startswith(b"data:"):
                continue
            found = _from_document(_parse(line[5:].strip()))
            if found != NONE:
                return found
        return NONE


def _parse(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _from_document(doc: Any) -> Tokens:
    if isinstance(doc, list) and doc:
        doc = doc[0]  # TGI's / on a batch of one
    if not isinstance(doc, dict):
        return NONE
    usage = doc.get("usage")
    if isinstance(usage, dict):
        return Tokens(_int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")))
    details = doc.get("details")
    if isinstance(details, dict):
        prefill = details.get("prefill")
        return Tokens(len(prefill) if isinstance(prefill, list) else 0, _int(details.get("generated_tokens")))
    return NONE


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0
