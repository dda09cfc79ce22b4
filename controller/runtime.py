"""The seam between the reconcile loop and where replicas run: Kubernetes objects (``controller.kubernetes``)
or child processes on this machine (``controller.local``).

The loop (``controller.reconcile``) owns everything a user sees the same way on both: reading the row, the
refused-spec memory, the status row and its conditions, soft-deleted rows removed once nothing is left. A
runtime owns converging one endpoint to its spec, reporting what runs as an ``Observation`` (the same states
and messages, from its own pure mapping), removing it, and naming the endpoints it still holds (orphans too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from controller.desired import EndpointView
from controller.status import Observation
from core.domain.catalog import HardwareRow

Notify = Callable[[str], None]  # enqueues an endpoint id: something it runs changed


class Runtime(Protocol):
    def converge(self, view: EndpointView, compute: HardwareRow) -> None:
        """Makes what runs match the view; ``PermanentError`` when the spec cannot run here."""

    def observe(
        self, view: EndpointView, *, paused: bool, compute: HardwareRow | None, build_error: str | None, url: str
    ) -> Observation:
        """What runs, as the user reads it (with serving addresses and the start-up time)."""

    def upstream(self, view: EndpointView) -> str | None:
        """Where the gateway sends the endpoint's requests when it does not pick a replica itself."""

    def remove(self, endpoint_id: str) -> bool:
        """Stops and deletes what the endpoint holds; True once nothing is left."""

    def endpoint_ids(self) -> set[str]:
        """Every endpoint this runtime holds something of."""
