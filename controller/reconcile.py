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

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, sessionmaker

from controller import metrics
from controller.desired import EndpointView, desired_replicas
from controller.errors import PermanentError
from controller.runtime import Runtime
from controller.status import Observation, ReplicaSeen
from core.db import feed
from core.db.crypto import SecretBox
from core.db.models import Account, Endpoint, EndpointReplica, EndpointScaling, EndpointStatus, ReplicaCount
from core.db.session import transaction
from core.db.writes import component_event
from core.domain.catalog import HardwareCatalog, HardwareRow
from core.leadership import NotLeader

log = logging.getLogger("dais.controller")
GONE_KEPT = 50  # gone replicas listed per endpoint (with their logs' start and stop times)
FAILED = frozenset({"failed", "updateFailed"})


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The row as read at the start of a pass (detached from its session)."""

    view: EndpointView
    paused: bool
    deleted: bool
    status: tuple[Any, ...] | None
    replicas: tuple[ReplicaSeen, ...]  # the live rows of endpoint_replicas
    counted: tuple[int, str, float] | None  # the latest replica_counts row: replicas, hardware, price


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
    # endpoint id → its latest replica_counts row (replicas, hardware, price), read once per process
    _counted: dict[str, tuple[int, str, float]] = field(default_factory=dict)

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
        self._write_status(snapshot, observation, compute)
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
            replicas = tuple(
                ReplicaSeen(r.id, r.state, r.host, r.started_at, r.restarts, r.last_termination)
                for r in session.scalars(
                    select(EndpointReplica)
                    .where(EndpointReplica.endpoint_id == endpoint_id, EndpointReplica.stopped_at.is_(None))
                    .order_by(EndpointReplica.id)
                )
            )
            counted = self._counted.get(endpoint_id)
            if counted is None:
                last = session.execute(
                    select(ReplicaCount.replicas, ReplicaCount.hardware, ReplicaCount.price_per_hour)
                    .where(ReplicaCount.endpoint_id == endpoint_id)
                    .order_by(ReplicaCount.at.desc(), ReplicaCount.id.desc())
                    .limit(1)
                ).first()
                counted = (last[0], last[1], last[2]) if last else None
            return Snapshot(
                view=view,
                paused=row.paused,
                deleted=row.deleted_at is not None,
                status=previous,
                replicas=replicas,
                counted=counted,
            )

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
                gone = session.execute(
                    delete(Endpoint)
                    .where(Endpoint.id == endpoint_id, Endpoint.deleted_at.is_not(None))
                    .returning(Endpoint.namespace, Endpoint.name)
                ).first()
                if gone is not None:
                    self._count(session, endpoint_id, gone.namespace, gone.name, 0, None, self.clock())
                    event = feed.Event(gone.namespace, endpoint_id, gone.name, "deleted", {"name": gone.name})
                    feed.publish(session, [event], now=self.clock())
            self._counted.pop(endpoint_id, None)
            log.info("endpoint %s deleted: nothing of it runs any more", endpoint_id)

    def _fence(self) -> None:
        if not self.is_leader():
            raise NotLeader("lost the controller lease; not writing")

    # -- report --------------------------------------------------------------------------------------------

    def _observe(self, snapshot: Snapshot, compute: HardwareRow | None, build_error: str | None) -> Observation:
        view = snapshot.view
        url = f"{self.url_base.rstrip('/')}/{view.namespace}/{view.name}"
        return self.runtime.observe(view, paused=snapshot.paused, compute=compute, build_error=build_error, url=url)

    def _write_status(self, snapshot: Snapshot, observation: Observation, compute: HardwareRow | None) -> None:
        """Status, replicas and the replica count, each written only when it changed, in one transaction; with
        the feed's event and, for a failure or a recovery, an audit event."""
        view, previous = snapshot.view, snapshot.status
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
            # The latest Ready replica's start-up time outlives it: the gateway's Retry-After while none is Ready.
            "startup_seconds": observation.startup_seconds
            if observation.startup_seconds is not None
            else (previous[-1] if previous is not None else None),
        }
        status_changed = previous != tuple(fields.values())
        replicas_changed = snapshot.replicas != observation.replicas
        held = sum(1 for r in observation.replicas if r.holds_hardware)
        counted = snapshot.counted
        count_changed = (counted is None and held > 0) or (
            counted is not None
            and (held != counted[0] or (held > 0 and compute is not None and compute.id != counted[1]))
        )
        if not (status_changed or replicas_changed or count_changed):
            return
        self._fence()
        now = self.clock()
        try:
            with transaction(self.sessions) as session:
                if status_changed:
                    status = session.get(EndpointStatus, endpoint_id)
                    if status is None:
                        session.add(EndpointStatus(endpoint_id=endpoint_id, updated_at=now, **fields))
                    else:
                        for name, value in fields.items():
                            setattr(status, name, value)
                        status.updated_at = now
                if replicas_changed:
                    self._write_replicas(session, endpoint_id, snapshot.replicas, observation.replicas, now)
                if count_changed:
                    self._count(session, endpoint_id, view.namespace, view.name, held, compute, now)
                if status_changed:
                    self._announce(session, view, previous, observation, now)
        except IntegrityError:  # the endpoint row went away meanwhile; the next pass cleans up
            self._counted.pop(endpoint_id, None)
            return
        if status_changed:
            metrics.STATUS_WRITES.inc()

    def _write_replicas(
        self,
        session: Session,
        endpoint_id: str,
        stored: tuple[ReplicaSeen, ...],
        seen: tuple[ReplicaSeen, ...],
        now: datetime,
    ) -> None:
        """Upserts what runs; a stored replica no longer seen is gone, with its stop time."""
        known = {r.id: r for r in stored}
        for replica in seen:
            if known.get(replica.id) == replica:
                continue
            row = session.get(EndpointReplica, (endpoint_id, replica.id))
            if row is None:
                row = EndpointReplica(endpoint_id=endpoint_id, id=replica.id, updated_at=now)
                session.add(row)
            row.state, row.host, row.started_at = replica.state, replica.host, replica.started_at
            row.restarts, row.last_termination, row.stopped_at = replica.restarts, replica.last_termination, None
            row.updated_at = now
        gone = set(known) - {r.id for r in seen}
        if not gone:
            return
        session.execute(
            update(EndpointReplica)
            .where(EndpointReplica.endpoint_id == endpoint_id, EndpointReplica.id.in_(gone))
            .values(state="gone", stopped_at=now, updated_at=now)
        )
        kept = (
            select(EndpointReplica.id)
            .where(EndpointReplica.endpoint_id == endpoint_id, EndpointReplica.stopped_at.is_not(None))
            .order_by(EndpointReplica.stopped_at.desc())
            .limit(GONE_KEPT)
        )
        session.execute(
            delete(EndpointReplica).where(
                EndpointReplica.endpoint_id == endpoint_id,
                EndpointReplica.stopped_at.is_not(None),
                EndpointReplica.id.not_in(kept.scalar_subquery()),
            )
        )

    def _count(
        self,
        session: Session,
        endpoint_id: str,
        namespace: str,
        name: str,
        held: int,
        compute: HardwareRow | None,
        now: datetime,
    ) -> None:
        """A row of the usage history: from now on, ``held`` replicas of ``compute`` (its price as of now)."""
        last = self._counted.get(endpoint_id)
        hardware = compute.id if compute is not None else (last[1] if last else "")
        price = compute.price_per_hour if compute is not None else (last[2] if last else 0.0)
        session.add(
            ReplicaCount(
                endpoint_id=endpoint_id,
                namespace=namespace,
                name=name,
                hardware=hardware,
                price_per_hour=price,
                replicas=held,
                at=now,
            )
        )
        self._counted[endpoint_id] = (held, hardware, price)

    @staticmethod
    def _announce(
        session: Session, view: EndpointView, previous: tuple[Any, ...] | None, observation: Observation, now: datetime
    ) -> None:
        """The feed's event of a status change, and the audit log's of a failure or a recovery."""
        state, before = observation.state.value, previous[0] if previous else None
        shown = (observation.message, observation.ready_replica, observation.target_replica, observation.url)
        if previous is None or (state, *shown) != (previous[0], previous[1], previous[2], previous[3], previous[4]):
            body = {
                "name": view.name,
                "state": state,
                "message": observation.message,
                "readyReplica": observation.ready_replica,
                "targetReplica": observation.target_replica,
                "url": observation.url,
                "generation": view.generation,
            }
            feed.publish(session, [feed.Event(view.namespace, view.id, view.name, "status", body)], now=now)
        action = None
        if state in FAILED and before not in FAILED:
            action = "failed"
        elif state == "running" and before in FAILED:
            action = "recovered"
        if action is not None:
            component_event(
                session,
                endpoint_id=view.id,
                namespace=view.namespace,
                actor="controller",
                action=action,
                diff=[
                    {"path": "status.state", "old": before, "new": state},
                    {"path": "status.message", "old": None, "new": observation.message},
                ],
                now=now,
            )


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
        status.startup_seconds,  # last: _write_status keeps it as previous[-1]
    )
