"""Where an endpoint's log lines come from, for the logs route.

- The local runtime: its replicas' files under ``DAIS_HOME/logs`` (``core.replica_logs``).
- Kubernetes, live: each pod's containers through the API server (the kubelet's log), the previous run's too
  for a container that restarted. The kubelet merges stdout and stderr, so a line's ``stream`` is its
  container there (``engine``, ``model-fetch``).
- Kubernetes, history: the operator's log store (``core.log_store``, VictoriaLogs), for replicas that are gone
  and for lines a pod no longer holds. Lines found in both are shown once.

The replicas listed are the controller's (``endpoint_replicas``, running and recently gone) and, on
Kubernetes, the store's older ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from api.errors import BadRequest, ServiceUnavailable
from core import replica_logs
from core.db.models import EndpointReplica
from core.kube.client import Kube, KubeError
from core.kube.labels import ENDPOINT_ID
from core.log_store import LogStore, LogStoreError
from core.replica_logs import LogLine, ReplicaRecord

MASK = "********"
NO_STORE = "set DAIS_LOGS__STORE_URL to a VictoriaLogs that the cluster's log collector writes to"


class Follower(Protocol):
    poll_seconds: float

    def new_lines(self) -> list[LogLine]:
        """Lines that arrived since the last call (or since the follower was made)."""


@dataclass(frozen=True, slots=True)
class Logs:
    replicas: list[ReplicaRecord]
    lines: list[LogLine]
    source: str
    follower: Follower | None = None  # the lines written after these, for a client that follows
    secrets: tuple[str, ...] = ()  # values to mask in them

    def masked(self, line: LogLine) -> LogLine:
        return replace(line, line=masked(line.line, self.secrets)) if self.secrets else line

    def with_masked_lines(self) -> Logs:
        return replace(self, lines=[self.masked(line) for line in self.lines])


@dataclass(frozen=True, slots=True)
class Query:
    replica: str | None
    since: datetime | None
    until: datetime | None
    search: str | None
    tail: int
    follow: bool


def masked(text: str, secrets: tuple[str, ...]) -> str:
    for value in sorted(secrets, key=len, reverse=True):  # a secret inside a longer one is masked with it
        text = text.replace(value, MASK)
    return text


def _unknown_replica(replica: str, known: Sequence[str]) -> BadRequest:
    listed = ", ".join(known) or "none yet"
    return BadRequest(
        f"replica: {replica!r} is not one of this endpoint's replicas ({listed})",
        fields=[{"field": "replica", "message": "unknown replica"}],
    )


# -- the local runtime ---------------------------------------------------------------------------------------


@dataclass
class _LocalFollower:
    inner: replica_logs.Follower
    poll_seconds: float = 0.25  # the files are local: a stat per replica

    def new_lines(self) -> list[LogLine]:
        return self.inner.new_lines()


def local(home: Path, endpoint_id: str, query: Query) -> Logs:
    folder = replica_logs.directory(home, endpoint_id)
    records = replica_logs.read_records(folder)
    known = [r.id for r in records]
    if query.replica is not None and query.replica not in known:
        raise _unknown_replica(query.replica, known)
    # Set up before the lines are read: a line written meanwhile is followed, never missed.
    follower = _LocalFollower(replica_logs.Follower(folder, query.replica)) if query.follow else None
    found = replica_logs.read_lines(
        folder,
        replicas=[query.replica] if query.replica else known,
        since=query.since,
        until=query.until,
        search=query.search,
        tail=query.tail,
    )
    return Logs(records, found, "local", follower)


# -- Kubernetes ------------------------------------------------------------------------------------------------


def kubernetes(
    kube: Kube,
    namespace: str,
    endpoint_id: str,
    observed: Sequence[EndpointReplica],
    store: LogStore | None,
    query: Query,
    *,
    clock: Callable[[], datetime],
) -> Logs:
    """Live lines from the pods that exist, history from the store; the replicas of both."""
    records = {
        r.id: ReplicaRecord(r.id, r.started_at or r.updated_at, r.stopped_at, r.restarts, None) for r in observed
    }
    stored_lines: list[LogLine] = []
    if store is not None:
        try:
            for kept in store.replicas(endpoint_id):
                records.setdefault(kept.id, ReplicaRecord(kept.id, kept.first_seen, kept.last_seen))
            if query.replica is None or query.replica in records:
                stored_lines = store.lines(
                    endpoint_id,
                    replica=query.replica,
                    since=query.since,
                    until=query.until,
                    search=query.search,
                    tail=query.tail,
                )
        except LogStoreError as exc:
            raise ServiceUnavailable(f"the log store is unavailable: {exc}") from exc
    pods = _pods(kube, namespace, endpoint_id)
    for name, pod in pods.items():
        records.setdefault(name, ReplicaRecord(name, _started(pod)))
    if query.replica is not None and query.replica not in records:
        raise _unknown_replica(query.replica, sorted(records))
    live = [
        line
        for name, pod in pods.items()
        if query.replica in (None, name)
        for line in _pod_lines(kube, namespace, pod, since=query.since, tail=query.tail)
        if (query.until is None or line.time < query.until) and (not query.search or query.search in line.line)
    ]
    # Once each (the store's copy, which knows its stream), in time order; lines of one instant keep the order
    # their source gave (the sort is stable).
    stored_keys = {(x.time, x.replica, x.line) for x in stored_lines}
    merged = [*stored_lines, *(x for x in live if (x.time, x.replica, x.line) not in stored_keys)]
    lines = sorted(merged, key=lambda line: (line.time, line.replica))[-query.tail :]
    source = "kubernetes and the log store" if store is not None else f"kubernetes, live pods only: {NO_STORE}"
    follower = (
        _KubeFollower(kube, namespace, endpoint_id, query.replica, since=max((x.time for x in lines), default=clock()))
        if query.follow
        else None
    )
    replicas = sorted(records.values(), key=lambda r: (r.stopped_at is None, r.started_at))
    return Logs(replicas, lines, source, follower)


def _pods(kube: Kube, namespace: str, endpoint_id: str) -> dict[str, dict[str, object]]:
    try:
        items, _ = kube.list("Pod", namespace, selector=f"{ENDPOINT_ID}={endpoint_id}")
    except KubeError as exc:
        raise ServiceUnavailable(f"the Kubernetes API did not list the endpoint's pods: {exc}") from exc
    return {str(pod["metadata"]["name"]): pod for pod in items}


def _started(pod: dict[str, object]) -> datetime:
    status = pod.get("status") or {}
    meta = pod.get("metadata") or {}
    stamp = (status.get("startTime") if isinstance(status, dict) else None) or (
        meta.get("creationTimestamp") if isinstance(meta, dict) else None
    )
    return _time(str(stamp)) if stamp else datetime.now(UTC)


def _containers(pod: dict[str, object]) -> list[tuple[str, int]]:
    """(container, restarts) of the pod's init and app containers that have started."""
    status = pod.get("status") or {}
    if not isinstance(status, dict):
        return []
    found = []
    for key in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(key) or []:
            state = container.get("state") or {}
            if "running" in state or "terminated" in state or container.get("restartCount"):
                found.append((str(container["name"]), int(container.get("restartCount") or 0)))
    return found


def _pod_lines(
    kube: Kube, namespace: str, pod: dict[str, object], *, since: datetime | None, tail: int | None
) -> list[LogLine]:
    meta = pod.get("metadata") or {}
    name = str(meta.get("name")) if isinstance(meta, dict) else ""
    found: list[LogLine] = []
    for container, restarts in _containers(pod):
        for previous in (True, False) if restarts else (False,):
            try:
                text = kube.log(
                    namespace,
                    name,
                    container=container,
                    previous=previous,
                    tail_lines=tail,
                    since_time=since,
                    timestamps=True,
                )
            except KubeError:
                continue  # the kubelet may be gone with its node, or the run not started yet: the store has it
            found.extend(_parse(text, name, container))
    return found


def _parse(text: str, pod: str, container: str) -> list[LogLine]:
    found = []
    for raw in text.splitlines():
        stamp, _, line = raw.partition(" ")
        try:
            found.append(LogLine(_time(stamp), pod, container, line))
        except ValueError:
            continue
    return found


def _time(stamp: str) -> datetime:
    """RFC 3339 with up to nanoseconds (Python reads microseconds)."""
    head, dot, rest = stamp.rstrip("Z").partition(".")
    fraction = rest[:6] if dot else ""
    moment = datetime.fromisoformat(f"{head}.{fraction or '0'}" if dot else head)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass
class _KubeFollower:
    """Polls each live pod's log from the newest time seen (the API's ``sinceTime`` has second precision, so
    the lines of that second come again and are dropped by what was sent)."""

    kube: Kube
    namespace: str
    endpoint_id: str
    replica: str | None
    since: datetime
    poll_seconds: float = 1.0  # each poll is a request per container to the API server
    _sent: set[LogLine] = field(default_factory=set)

    def new_lines(self) -> list[LogLine]:
        try:
            pods = self.kube.list("Pod", self.namespace, selector=f"{ENDPOINT_ID}={self.endpoint_id}")[0]
        except KubeError:
            return []
        fresh: list[LogLine] = []
        floor = self.since.replace(microsecond=0)
        for pod in pods:
            if self.replica not in (None, pod["metadata"]["name"]):
                continue
            fresh.extend(
                line
                for line in _pod_lines(self.kube, self.namespace, pod, since=floor, tail=None)
                if line.time >= self.since and line not in self._sent
            )
        fresh.sort(key=lambda line: line.time)
        if fresh:
            self.since = fresh[-1].time
            self._sent = {line for line in self._sent | set(fresh) if line.time >= self.since - timedelta(seconds=1)}
        return fresh
