"""An upstream on raw sockets that does what no engine should, on cue: a response head of any size, and a stream
that ends only when the test says so. It speaks HTTP/1.1 (keep-alive, Content-Length or chunked answers); the
fake engine stands in for well-behaved replicas.

Paths: ``/big-head/{n}`` answers 200 with an ``X-Big`` header of n bytes; ``/hold`` streams one event, then
waits for ``release()`` before its last event and end (``held`` counts streams begun); ``/drop`` closes the
connection without a word (a replica dying mid-request); ``/drop-reused`` does so only on a connection that
answered before (a kept-alive connection the replica closed as the gateway picked it); ``/garbage`` answers
something that is not HTTP; anything else answers 200 with a small JSON body. ``connections`` counts those
accepted.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType


class ScriptedUpstream:
    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.address = f"127.0.0.1:{self.port}"
        self.held = 0
        self.connections = 0
        self.finished = 0  # held streams sent whole
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._closing = False
        threading.Thread(target=self._accept, name="scripted-upstream", daemon=True).start()

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self._closing = True
        self._release.set()
        self._listener.close()

    def __enter__(self) -> ScriptedUpstream:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        answered = 0
        with conn:
            try:
                while True:
                    while b"\r\n\r\n" not in buffer:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buffer += data
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    lines = head.decode("latin-1").split("\r\n")
                    path = lines[0].split(" ")[1]
                    fields = dict(line.lower().partition(":")[::2] for line in lines[1:])
                    length = int(fields.get("content-length", "0"))
                    while len(buffer) < length:
                        buffer += conn.recv(65536)
                    buffer = buffer[length:]
                    if path == "/drop" or (path == "/drop-reused" and answered):
                        return
                    self._answer(conn, path)
                    answered += 1
            except OSError:
                return

    def _answer(self, conn: socket.socket, path: str) -> None:
        if path.startswith("/big-head/"):
            size = int(path.rsplit("/", 1)[1])
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Big: " + b"a" * size + b"\r\n\r\n{}")
        elif path == "/garbage":
            conn.sendall(b"SPDY/9 what\r\n\r\n")
        elif path == "/hold":
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                + _chunk(b"data: first\n\n")
            )
            with self._lock:
                self.held += 1
            self._release.wait()
            if self._closing:
                return
            conn.sendall(_chunk(b"data: last\n\n") + b"0\r\n\r\n")
            with self._lock:
                self.finished += 1
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)
