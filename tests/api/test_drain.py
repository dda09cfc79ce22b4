"""A draining API process (``AppState.drain``, run on SIGTERM): /readyz answers 503, and a followed log ends
cleanly rather than hold the process until its drain time runs out. The signal's side (the order, the listener,
the live feed's stream, the exit status) is tests/test_api_workers.py's, on real processes."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from fastapi.testclient import TestClient

from api.endpoint import logs as log_sources
from api.endpoint.routes import _following
from core.replica_logs import LogWriter, directory


def test_readyz_answers_503_once_draining(client: TestClient) -> None:
    assert client.get("/readyz").status_code == 200
    client.app.state.dais.drain()  # type: ignore[attr-defined]
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert "draining" in answer.json()["error"]
    assert client.get("/api/whoami-v2").status_code == 200  # requests that still come are served


def test_a_followed_log_ends_when_the_process_drains(tmp_path: Path) -> None:
    """The follow sends a line written after it began; the drain starts; the stream ends (its next look)."""
    query = log_sources.Query(replica=None, since=None, until=None, search=None, tail=10, follow=True)
    found = log_sources.local(tmp_path, "endpoint-1", query)
    draining = threading.Event()
    writer = LogWriter(directory(tmp_path, "endpoint-1") / "replica-1.log")
    writer.write("stdout", "written while followed")
    writer.close()

    async def follow() -> list[bytes]:
        sent = []
        async for chunk in _following(found, None, draining):
            sent.append(chunk)
            draining.set()
        return sent

    sent = asyncio.run(asyncio.wait_for(follow(), timeout=30))
    assert len(sent) == 1
    assert b"written while followed" in sent[0]
