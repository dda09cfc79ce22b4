"""The controller's part of the embedded metric history (``core.db.metric_samples``): every 10 s, each endpoint's
replicas (Ready and desired, from the status rows it writes) and, on the local runtime, their CPU and memory; once
a minute, the rollup and the pruning of the whole table.

One transaction per sample: one SELECT of the status rows with replicas, one multi-row INSERT. An endpoint with
no replica, Ready or desired, and nothing measured writes no row (a missing row reads as zero). Only the leader
samples (it runs inside ``Controller._serve``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from controller.local import ReplicaUse
from core.db.metric_samples import Maintained, Replicas, maintain, next_sample_at, write_replicas
from core.db.models import EndpointStatus
from core.db.outage import level

log = logging.getLogger("dais.controller.history")

MAINTAIN_SECONDS = 60


@dataclass
class ReplicaSampler:
    sessions: sessionmaker[Session]
    clock: Callable[[], datetime]
    use: Callable[[], Mapping[str, ReplicaUse]] | None = None  # the local runtime's measure of its processes
    last_at: int = 0
    maintained_at: float = field(default=float("-inf"))  # monotonic

    def sample(self, at: int) -> int:
        """Writes the sample ending at ``at``; returns the rows written."""
        use = self.use() if self.use is not None else {}
        with self.sessions.begin() as session:
            counts = session.execute(
                select(EndpointStatus.endpoint_id, EndpointStatus.ready_replica, EndpointStatus.target_replica).where(
                    or_(EndpointStatus.ready_replica > 0, EndpointStatus.target_replica > 0)
                )
            ).all()
            replicas = {endpoint_id: (ready, desired) for endpoint_id, ready, desired in counts}
            samples = []
            for endpoint_id in replicas.keys() | use.keys():
                ready, desired = replicas.get(endpoint_id, (0, 0))
                measured = use.get(endpoint_id)
                samples.append(
                    Replicas(
                        endpoint_id,
                        ready=ready,
                        desired=desired,
                        measured=measured.replicas if measured else 0,
                        cpu_cores=measured.cpu_cores if measured else 0.0,
                        memory_bytes=measured.memory_bytes if measured else 0.0,
                    )
                )
            written = write_replicas(session, samples, at=at)
        self.last_at = at
        return written

    def maintain(self) -> Maintained:
        with self.sessions.begin() as session:
            done = maintain(session, now=self.clock())
        self.maintained_at = time.monotonic()
        if done.rolled_up or done.pruned:
            log.debug("metric history: %d rollup rows written, %d rows pruned", done.rolled_up, done.pruned)
        return done

    def run(self, stop: threading.Event) -> None:
        """Samples at the multiples of 10 s of the clock until ``stop``; errors are logged and the next sample
        goes on."""
        while True:
            at = next_sample_at(self.clock().timestamp(), self.last_at)
            if stop.wait(max(0.0, at - self.clock().timestamp())):
                return
            try:
                self.sample(at)
                if time.monotonic() - self.maintained_at >= MAINTAIN_SECONDS:
                    self.maintain()
            except Exception as exc:
                self.last_at = at
                log.log(level(exc), "could not write the metric history (%s); the next sample goes on", exc)
