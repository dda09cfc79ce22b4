"""Reconcile one endpoint by id: re-read everything, converge, report.

Level-triggered and idempotent: the caller only says *which* endpoint; this re-reads the row, has the runtime
(``controller.runtime``: Kubernetes objects or local processes) converge what runs to it, and writes status
only when it changed. A second pass over an unchanged endpoint makes no write at all. A spec that cannot work
(``PermanentError``: a row gone from the catalog, an object Kubernetes refuses, an image with no container
runtime here) is shown as ``failed`` and remembered with its generation: later passes report it again
without applying anything until the spec changes.

Deletion survives a crash anywhere: the row stays (soft-deleted) until the runtime holds nothing of the
endpoint, and only then is it removed. Something held for an id that has no row (a crash between an apply
and a rollback, or a hand-made copy) is removed the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, sessionmaker

from controller import metrics
from controller.desired import EndpointView, desired_replicas
from controller.errors import PermanentError
from controller.runtime import Runtime
from controller.status import Observation
from core.db.crypto import SecretBox
from core.db.models import Account, Endpoint, EndpointScaling, EndpointStatus
from core.db.session import transaction
from core.domain.catalog import HardwareCatalog, HardwareRow
from core.leadership import NotLeader

log = logging.getLogger("dais.controller")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The row as read at the start of a pass (detached from its session)."""

    view: EndpointView
    paused: bool
    deleted: bool
    status: tuple[Any, ...] | None


@dataclass
class Reconciler:
    sessions: sessionmaker[Session]
    runtime: Runtime
    hardware: HardwareCatalog
    box: SecretBox
    url_base: str
    clock: Callable[[], datetime]
    is_leader: Callable[[], bool]
    # endpoint id → (generation, why) of a spec that cannot work: not applied again until the spec changes
    _refused: dict[str, tuple[int, str]] = field(default_factory=dict)

    def __call__(self, endpoint_id: str) -> float | None:
        """One pass; returns seconds after which to look again (a deadline), or None."""
        snapshot = self._read(endpoint_id)
        if snapshot is None or snapshot.deleted:
            self._refused.pop(endpoint_id, None)
            self._remove(endpoint_id, finalize=snapshot is not None)
            return None
        view = snapshot.view
        compute = self._compute(view.spec)
        build_error = None
        refused = self._refused.get(endpoint_id)
        try:
            if refused is not None and refused[0] == view.generation:
                raise PermanentError(refused[1])  # not retried until the spec changes
            if compute is None:
                raise PermanentError(
                    f"hardware {view.spec['compute'].get('id')} is no longer in the hardware catalog: "
                    "update the endpoint to an instance listed by GET /v2/provider/{namespace}"
                )
            self._fence()
            self.runtime.converge(view, compute)
            self._refused.pop(endpoint_id, None)
        except PermanentError as exc:
            build_error = str(exc)
            self._refused[endpoint_id] = (view.generation, build_error)
        observation = self._observe(snapshot, compute, build_error)
        self._write_status(view, observation, snapshot.status)
        return observation.recheck_after

    # -- read ----------------------------------------------------------------------------------------------

    def _read(self, endpoint_id: str) -> Snapshot | None:
        with transaction(self.sessions) as session:
            # One round trip: the row, its status, the namespace's Hub token and the autoscaler's count.
            found = session.execute(
                select(Endpoint, Account.hub_token, EndpointScaling.replicas)
                .options(joinedload(Endpoint.status))
                .outerjoin(Account, Account.name == Endpoint.namespace)
                .outerjoin(EndpointScaling, EndpointScaling.endpoint_id == Endpoint.id)
                .where(Endpoint.id == endpoint_id)
            ).first()
            if found is None:
                return None
            row, sealed, autoscaled = found
            material = self.box.open(row.secrets) if row.secrets else {}
            status = row.status
            previous = _status_tuple(status) if status is not None else None
            resolution = row.resolution or {}
            revision = resolution.get("sha") or row.spec["model"].get("revision") or "main"
            view = EndpointView(
                id=row.id,
                namespace=row.namespace,
                name=row.name,
                spec=row.spec,
                generation=row.generation,
                revision=revision,
                replicas=desired_replicas(
                    spec=row.spec,
                    paused=row.paused,
                    scaled_to_zero=row.scaled_to_zero,
                    autoscaled=autoscaled,
                ),
                secrets=dict(material.get("secrets", {})),
                registry_password=material.get("registryPassword"),
                engine=resolution.get("engine"),
                model_path=resolution.get("modelPath"),
                hub_token=self.box.open(sealed)["token"] if sealed else None,
            )
            return Snapshot(view=view, paused=row.paused, deleted=row.deleted_at is not None, status=previous)

    def _compute(self, spec: dict[str, Any]) -> HardwareRow | None:
        provider, compute = spec["provider"], spec["compute"]
        return self.hardware.find(
            (
                provider["vendor"],
                provider["region"],
                compute["accelerator"],
                compute["instanceType"],
                compute["instanceSize"],
            )
        )

    # -- converge ------------------------------------------------------------------------------------------

    def _remove(self, endpoint_id: str, *, finalize: bool) -> None:
        self._fence()
        if not self.runtime.remove(endpoint_id):
            return  # the runtime reports each part gone, which brings this endpoint back here
        if finalize:
            self._fence()
            with transaction(self.sessions) as session:
                session.execute(delete(Endpoint).where(Endpoint.id == endpoint_id, Endpoint.deleted_at.is_not(None)))
            log.info("endpoint %s deleted: nothing of it runs any more", endpoint_id)

    def _fence(self) -> None:
        if not self.is_leader():
            raise NotLeader("lost the controller lease; not writing")

    # -- report --------------------------------------------------------------------------------------------

    def _observe(self, snapshot: Snapshot, compute: HardwareRow | None, build_error: str | None) -> Observation:
        view = snapshot.view
        url = f"{self.url_base.rstrip('/')}/{view.namespace}/{view.name}"
        return self.runtime.observe(view, paused=snapshot.paused, compute=compute, build_error=build_error, url=url)

    def _write_status(self, view: EndpointView, observation: Observation, previous: tuple[Any, ...] | None) -> None:
        endpoint_id, generation, revision = view.id, view.generation, view.revision
        fields = {
            "state": observation.state.value,
            "message": observation.message,
            "ready_replica": observation.ready_replica,
            "target_replica": observation.target_replica,
            "url": observation.url,
            "observed_generation": generation,
            "resolved_revision": revision,
            "conditions": [{**c, "observedGeneration": generation} for c in observation.conditions],
            "upstream": self.runtime.upstream(view),
            "addresses": observation.addresses,
            "startup_seconds": observation.startup_seconds,
        }
        if previous == tuple(fields.values()):
            return
        self._fence()
        try:
            with transaction(self.sessions) as session:
                status = session.get(EndpointStatus, endpoint_id)
                if status is None:
                    session.add(EndpointStatus(endpoint_id=endpoint_id, updated_at=self.clock(), **fields))
                else:
                    for name, value in fields.items():
                        setattr(status, name, value)
                    status.updated_at = self.clock()
        except IntegrityError:  # the endpoint row went away meanwhile; the next pass cleans up
            return
        metrics.STATUS_WRITES.inc()


def _status_tuple(status: EndpointStatus) -> tuple[Any, ...]:
    return (
        status.state,
        status.message,
        status.ready_replica,
        status.target_replica,
        status.url,
        status.observed_generation,
        status.resolved_revision,
        status.conditions,
        status.upstream,
        status.addresses,
        status.startup_seconds,
    )
