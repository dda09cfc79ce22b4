"""One way for a component to lead: hold a Kubernetes Lease (``core.kube.lease``) with hot standbys waiting,
or, without a cluster to hold one in (``dais serve`` on a laptop), simply act.

Whoever writes on the leader's behalf checks ``is_leader()`` right before each write and raises ``NotLeader``
when it is False. That happens first when renewals fail (the API server away): leading is then suspended, and
resumes once a renewal finds the lease still naming this process (the controller's workers wait for that; the
autoscaler skips its ticks and wakes meanwhile). ``lost`` is set once the lease names another holder: the
component's loop then stops and the process exits.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable

from core.kube.client import Kube
from core.kube.lease import LeaderElector
from core.settings import LeaseSettings


class NotLeader(Exception):
    """This process no longer holds its lease: it must stop writing."""


def default_identity() -> str:
    """Unique among the replicas of a component: the host (the pod's name on Kubernetes) and the pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Leadership:
    def __init__(
        self,
        kube: Kube | None,
        *,
        namespace: str,
        lease: LeaseSettings,
        identity: str,
        on_leading: Callable[[bool], None] = lambda leading: None,
    ) -> None:
        """``kube`` None: no cluster, this process leads alone. ``on_leading`` is told of each change."""
        self.name = lease.lease_name
        self.lost = threading.Event()  # set once a held lease is lost: the process should exit
        self._on_leading = on_leading
        self._elector = (
            None
            if kube is None
            else LeaderElector(
                kube,
                namespace=namespace,
                name=lease.lease_name,
                identity=identity,
                lease_seconds=lease.lease_seconds,
                renew_seconds=lease.renew_seconds,
                on_leading=on_leading,
            )
        )

    def acquire(self, stop: threading.Event) -> bool:
        """Blocks until this process leads (True; the lease is then renewed on a thread of its own, and ``lost``
        set once another holds it) or until ``stop`` (False)."""
        if self._elector is None:
            self._on_leading(True)
            return True
        if not self._elector.acquire(stop):
            return False
        threading.Thread(
            target=self._elector.keep, args=(stop, self.lost), name=f"lease-{self.name}", daemon=True
        ).start()
        return True

    def is_leader(self) -> bool:
        return self._elector is None or self._elector.is_leader()

    def release(self) -> None:
        """On a clean stop, hands a held lease over at once instead of making the standby wait it out."""
        if self._elector is not None and not self.lost.is_set():
            self._elector.release()
