"""``DrainingServer``: uvicorn, stopping in the order a load balancer needs (``DAIS_API__*``).

On SIGTERM or SIGINT:

1. ``drain`` runs (``AppState.drain``): /readyz answers 503 and the server-sent streams end;
2. ``unready_seconds`` later the listener closes, and idle keep-alive connections with it;
3. requests in flight get ``DAIS_API__DRAIN_SECONDS`` to finish (uvicorn's ``timeout_graceful_shutdown``),
   then they are cancelled;
4. the lifespan ends, and ``run`` returns (the process exits 0).

A second signal skips what is left of the wait in 2; a second SIGINT quits at once (uvicorn's rule).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from types import FrameType

import uvicorn

log = logging.getLogger("dais.api")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, drain: Callable[[], None], unready_seconds: float = 0) -> None:
        super().__init__(config)
        self.drain = drain
        self.unready_seconds = unready_seconds
        self.close_at: float | None = None  # when the listener closes (monotonic); None until a signal
        self._drained = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.close_at is not None or self.should_exit:
            super().handle_exit(sig, frame)
            return
        # Only noted here, in the signal handler; the event loop acts on it within a tick (0.1 s). Not
        # recorded for uvicorn to raise again once it stopped: the process exits 0 after a drain.
        self.close_at = time.monotonic() + self.unready_seconds
        log.info(
            "%s: draining (/readyz answers 503; the listener closes in %g s; requests in flight then get %s s)",
            signal.Signals(sig).name,
            self.unready_seconds,
            self.config.timeout_graceful_shutdown,
        )

    async def on_tick(self, counter: int) -> bool:
        if self.close_at is not None:
            if not self._drained:
                self._drained = True
                self.drain()
            if time.monotonic() >= self.close_at:
                self.should_exit = True
        return await super().on_tick(counter)
