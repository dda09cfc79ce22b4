"""Leader election with a coordination.k8s.io Lease, as client-go does it.

Only the leader acts (the controller reconciles, the autoscaler decides). A standby takes the lease once
it has seen it unchanged for a whole lease duration (measured on its own monotonic clock, so clock skew
between machines does not matter; a look that fails, the API server away, restarts that count, so after an
outage the leader gets a whole lease duration to renew). The leader renews every ``renew_seconds`` and stops
writing once its last renewal is older than the renew deadline (two thirds of the lease duration): it is
fenced before any standby can take over, so the two never write at once. Writes use the lease's
resourceVersion, so two candidates cannot both win.

A leader that cannot renew (the API server away) is only suspended: it leads again when a renewal finds the
lease still naming it, which proves nobody led in between. Once the lease names anyone else, or nobody, the
lease is lost for good.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from core.kube.client import Kube, KubeError, KubeUnreachable

log = logging.getLogger("dais.lease")


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: float,
        renew_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_leading: Callable[[bool], None] = lambda leading: None,
    ) -> None:
        """``on_leading`` is told each time this process takes or loses the lease (the caller's metrics)."""
        self._kube = kube
        self._on_leading = on_leading
        self._namespace = namespace
        self._name = name
        self.identity = identity
        self._lease_seconds = lease_seconds
        self._renew_seconds = renew_seconds
        self._renew_deadline = lease_seconds * 2 / 3
        self._monotonic = monotonic
        self._wall = wall
        self._observed_version: str | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None
        self._suspended = False  # leading lapsed for want of a renewal; logged once

    def is_leader(self) -> bool:
        renewed = self._renewed_at
        return renewed is not None and self._monotonic() - renewed < self._renew_deadline

    def acquire(self, stop: threading.Event) -> bool:
        """Blocks until this process leads (True) or ``stop`` is set (False)."""
        announced = False
        while not stop.is_set():
            if self.try_acquire():
                log.info("leading as %s", self.identity)
                return True
            if not announced:
                log.info("standing by: lease %s/%s is held by another controller", self._namespace, self._name)
                announced = True
            stop.wait(self._renew_seconds)
        return False

    def keep(self, stop: threading.Event, lost: threading.Event) -> None:
        """Renews every ``renew_seconds`` until ``stop``, or until the lease is lost: then sets ``lost``."""
        while not stop.wait(self._renew_seconds):
            try:
                held = self.renew()
            except Exception:  # a dead renewer would leave the process fenced forever, neither leading nor lost
                log.exception("renewing the lease %s/%s failed", self._namespace, self._name)
                continue
            if not held:
                lost.set()
                return

    def renew(self) -> bool:
        """One renewal by the holder; False once the lease names another holder, or none.

        A renewal that fails keeps the lease ours in name: ``is_leader()`` turns False at the renew deadline (the
        leader is suspended, logged once) and True again at the next renewal that succeeds."""
        attempt = self._monotonic()
        try:
            lease = self._kube.get("Lease", self._namespace, self._name)
            holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
            if lease is None or holder != self.identity:
                log.error("lost the lease %s/%s to %s: stopping", self._namespace, self._name, holder or "nobody")
                self._renewed_at = None
                self._on_leading(False)
                return False
            self._kube.replace(self._lease(lease))
        except KubeError as exc:  # a 409 too: whoever wrote in between shows at the next renewal
            if not self._suspended and not self.is_leader():
                self._suspended = True
                self._on_leading(False)
                log.warning(
                    "could not renew the lease %s/%s for %.0fs (%s): not acting until it is renewed",
                    self._namespace,
                    self._name,
                    attempt - (self._renewed_at or attempt),
                    exc,
                )
            return True
        self._renewed_at = attempt
        self._on_leading(True)
        if self._suspended:
            self._suspended = False
            log.info("renewed the lease %s/%s: acting again", self._namespace, self._name)
        return True

    def release(self) -> None:
        """Hands the lease over at once on a clean shutdown instead of making the standby wait it out."""
        if not self.is_leader():
            return
        self._renewed_at = None
        self._on_leading(False)
        try:
            lease = self._kube.get("Lease", self._namespace, self._name)
            if lease and lease.get("spec", {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                lease["spec"]["leaseDurationSeconds"] = 1
                self._kube.replace({**lease, "kind": "Lease", "apiVersion": "coordination.k8s.io/v1"})
        except KubeError as exc:
            log.warning("could not release the lease: %s", exc)

    def try_acquire(self) -> bool:
        """One attempt to take (or, holding it, renew) the lease; True when this process now leads."""
        attempt = self._monotonic()
        try:
            lease = self._kube.get("Lease", self._namespace, self._name)
            if lease is None:
                self._kube.create(self._lease(None))
            else:
                version = lease["metadata"]["resourceVersion"]
                if version != self._observed_version:
                    self._observed_version, self._observed_at = version, attempt
                spec = lease.get("spec") or {}
                holder = spec.get("holderIdentity")
                duration = float(spec.get("leaseDurationSeconds") or self._lease_seconds)
                if holder and holder != self.identity and attempt < self._observed_at + duration:
                    return False
                self._kube.replace(self._lease(lease))
        except KubeUnreachable:  # seen nothing: the wait for an unchanged lease starts again (the client logs it)
            self._observed_version = None
            return False
        except KubeError as exc:
            if exc.status not in (404, 409):  # an API server still starting (5xx, 429): as good as unseen
                self._observed_version = None
                log.warning("lease %s/%s: %s", self._namespace, self._name, exc)
            return False
        self._renewed_at = attempt
        self._on_leading(True)
        return True

    def _lease(self, current: dict[str, Any] | None) -> dict[str, Any]:
        now = _micro_time(self._wall())
        spec = (current or {}).get("spec") or {}
        ours = spec.get("holderIdentity") == self.identity
        metadata: dict[str, Any] = {"name": self._name, "namespace": self._namespace}
        if current is not None:
            metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, round(self._lease_seconds)),
                "acquireTime": spec.get("acquireTime") if ours else now,
                "renewTime": now,
                "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (0 if ours or current is None else 1),
            },
        }
