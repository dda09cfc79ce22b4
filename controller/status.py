"""Pure status mapping: what the cluster shows (Deployment, its pods) → the state a user reads, with a
message that says what to do. No I/O; ``now`` is an argument.

Pods are told apart by the pod-template digest the builder stamps on them: pods of the live
Deployment's current template are "current", any others are "old" (a rollout in progress). Failure of a
current pod is ``failed`` when nothing else serves, and ``updateFailed`` while old replicas keep serving.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from controller.desired import ENGINE_CONTAINER, FETCH_CONTAINER, TEMPLATE_HASH
from core.domain.catalog import HardwareRow
from core.domain.enums import EndpointState
from core.domain.state import MESSAGES

PULL_ERRORS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
CONFIG_ERRORS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
LOG_LINES = 20


@dataclass(frozen=True, slots=True)
class Observation:
    state: EndpointState
    message: str
    ready_replica: int
    target_replica: int
    url: str | None = None
    recheck_after: float | None = None  # seconds until a deadline passes and the state may change by itself
    conditions: list[dict[str, Any]] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)  # Ready pods' ip:port (serving_addresses)
    startup_seconds: float | None = None
    replicas: tuple[ReplicaSeen, ...] = ()  # what runs or tries to, one per replica (replicas_seen)


@dataclass(frozen=True, slots=True)
class ReplicaSeen:
    """One replica as the user's replica list shows it."""

    id: str
    state: str  # pending (not placed yet), starting, ready, restarting or failed
    host: str | None
    started_at: datetime | None
    restarts: int
    last_termination: str | None

    @property
    def holds_hardware(self) -> bool:
        """Placed on its hardware (what usage counts): every state but pending."""
        return self.state != "pending"


def observe(
    *,
    paused: bool,
    replicas: int,
    compute: HardwareRow | None,
    deployment: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    logs: Mapping[str, str],
    url: str,
    startup_deadline_seconds: float,
    now: datetime,
    build_error: str | None = None,
) -> Observation:
    live = [p for p in pods if not p.get("metadata", {}).get("deletionTimestamp")]
    ready_total = sum(1 for p in live if _ready(p))
    if paused:
        return with_conditions(Observation(EndpointState.PAUSED, MESSAGES[EndpointState.PAUSED], ready_total, 0))
    if build_error is not None or compute is None:
        message = build_error or "the endpoint's hardware is not in the hardware catalog"
        return with_conditions(Observation(EndpointState.FAILED, message, ready_total, replicas))
    if replicas == 0:
        state = EndpointState.SCALED_TO_ZERO
        return with_conditions(Observation(state, MESSAGES[state], ready_total, 0))
    if deployment is None:
        return with_conditions(
            Observation(EndpointState.PENDING, "waiting for the Deployment to be created", 0, replicas)
        )
    template = deployment.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {})
    current_hash = template.get(TEMPLATE_HASH)
    current = [p for p in live if _annotations(p).get(TEMPLATE_HASH) == current_hash]
    old_ready = sum(1 for p in live if _ready(p) and _annotations(p).get(TEMPLATE_HASH) != current_hash)
    current_ready = sum(1 for p in current if _ready(p))
    failure = next((f for f in (_failure(p, compute, logs) for p in current) if f), None)
    rollout_stuck = _progress_deadline_exceeded(deployment)

    if old_ready and not (current_ready and _rolled_out(deployment, replicas)):
        if failure or rollout_stuck:
            why = failure or "the new version did not become Ready before the rollout deadline"
            return with_conditions(
                Observation(
                    EndpointState.UPDATE_FAILED,
                    f"update failed, the previous version keeps serving: {why}",
                    ready_total,
                    replicas,
                )
            )
        return with_conditions(
            Observation(
                EndpointState.UPDATING,
                f"rolling out the new version: {current_ready} of {replicas} new replicas ready",
                ready_total,
                replicas,
            )
        )
    if current_ready:
        return with_conditions(
            Observation(EndpointState.RUNNING, MESSAGES[EndpointState.RUNNING], ready_total, replicas, url=url)
        )
    if failure:
        return with_conditions(Observation(EndpointState.FAILED, failure, 0, replicas))
    unschedulable = next((m for m in (_unschedulable(p) for p in current) if m), None)
    if unschedulable is not None:
        count = compute.num_accelerators
        what = f"{count}× {compute.instance_type}" if count > 1 else compute.instance_type
        return with_conditions(Observation(EndpointState.PENDING, f"waiting for {what}: {unschedulable}", 0, replicas))
    started = [p for p in current if p.get("spec", {}).get("nodeName")]
    if not started:
        return with_conditions(Observation(EndpointState.PENDING, MESSAGES[EndpointState.PENDING], 0, replicas))
    oldest = min(_created(p) for p in started)
    waited = (now - oldest).total_seconds() if oldest else 0.0
    if waited >= startup_deadline_seconds:
        minutes = round(startup_deadline_seconds / 60, 1)
        return with_conditions(
            Observation(
                EndpointState.FAILED,
                f"no replica became Ready within {minutes:g} minutes: check the endpoint's logs; for a very large "
                "model raise DAIS_CONTROLLER__STARTUP_DEADLINE_SECONDS",
                0,
                replicas,
            )
        )
    downloading = any(_init_running(p) for p in started)
    message = "downloading the model" if downloading else "starting the engine and loading the model"
    return with_conditions(
        Observation(EndpointState.INITIALIZING, message, 0, replicas, recheck_after=startup_deadline_seconds - waited)
    )


def crash_looping(pods: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(pod, container) pairs whose previous run's log would explain a crash loop."""
    found = []
    for pod in pods:
        for status in _container_statuses(pod):
            waiting = status.get("state", {}).get("waiting") or {}
            if waiting.get("reason") == "CrashLoopBackOff":
                found.append((pod["metadata"]["name"], status["name"]))
    return found


def serving_addresses(pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """``ip:port`` of the engine in every Ready, not terminating pod, sorted (the gateway balances over them)."""
    found = []
    for pod in pods:
        if pod.get("metadata", {}).get("deletionTimestamp") or not _ready(pod):
            continue
        ip = pod.get("status", {}).get("podIP")
        port = _engine_port(pod)
        if ip and port:
            found.append(f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}")
    return sorted(found)


def startup_seconds(pods: Sequence[Mapping[str, Any]]) -> float | None:
    """How long the most recently Ready pod took from start to Ready: the gateway's cold-start estimate."""
    latest: tuple[datetime, float] | None = None
    for pod in pods:
        ready_at = _ready_since(pod)
        if ready_at is None:
            continue
        took = max(0.0, (ready_at - _created(pod)).total_seconds())
        if latest is None or ready_at > latest[0]:
            latest = (ready_at, took)
    return latest[1] if latest else None


def replicas_seen(pods: Sequence[Mapping[str, Any]]) -> tuple[ReplicaSeen, ...]:
    """Each pod not terminating, as a replica: its node, start, restarts and last termination."""
    found = []
    for pod in pods:
        if pod.get("metadata", {}).get("deletionTimestamp"):
            continue
        statuses = _container_statuses(pod)
        engine = next((s for s in statuses if s.get("name") == ENGINE_CONTAINER), {})
        waiting = (engine.get("state", {}).get("waiting") or {}).get("reason", "")
        node = pod.get("spec", {}).get("nodeName")
        if _ready(pod):
            state = "ready"
        elif not node:
            state = "pending"
        elif waiting in PULL_ERRORS or waiting in CONFIG_ERRORS:
            state = "failed"
        elif waiting == "CrashLoopBackOff":
            state = "restarting"
        else:
            state = "starting"
        found.append(
            ReplicaSeen(
                id=pod["metadata"]["name"],
                state=state,
                host=node,
                started_at=_created(pod),
                restarts=sum(int(s.get("restartCount", 0)) for s in statuses),
                last_termination=_termination(engine),
            )
        )
    return tuple(sorted(found, key=lambda r: r.id))


def _termination(status: Mapping[str, Any]) -> str | None:
    terminated = status.get("lastState", {}).get("terminated") or status.get("state", {}).get("terminated")
    if not terminated:
        return None
    reason = terminated.get("reason") or "Terminated"
    code = terminated.get("exitCode")
    when = terminated.get("finishedAt")
    return f"{reason} (exit code {code})" + (f" at {when}" if when else "")


# -- helpers ---------------------------------------------------------------------------------------------


def _engine_port(pod: Mapping[str, Any]) -> int | None:
    for container in pod.get("spec", {}).get("containers", []) or []:
        if container.get("name") == ENGINE_CONTAINER:
            ports = container.get("ports") or []
            return int(ports[0]["containerPort"]) if ports else None
    return None


def _ready_since(pod: Mapping[str, Any]) -> datetime | None:
    for condition in pod.get("status", {}).get("conditions", []) or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            stamp = condition.get("lastTransitionTime")
            return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")) if stamp else None
    return None


def _failure(pod: Mapping[str, Any], compute: HardwareRow, logs: Mapping[str, str]) -> str | None:
    for status in _container_statuses(pod):
        container = status.get("name", "")
        role = "model download" if container == FETCH_CONTAINER else "engine"
        waiting = status.get("state", {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        terminated = status.get("lastState", {}).get("terminated") or status.get("state", {}).get("terminated") or {}
        if reason in PULL_ERRORS:
            image = status.get("image", "")
            detail = _one_line(waiting.get("message", ""))
            return (
                f"image {image} cannot be pulled ({reason}{': ' + detail if detail else ''}): check the image "
                "name and tag, and the registry credentials"
            )
        if reason in CONFIG_ERRORS:
            return f"{role} container cannot start ({reason}: {_one_line(waiting.get('message', ''))})"
        if terminated.get("reason") == "OOMKilled":
            return (
                f"the {role} ran out of memory (OOMKilled) on {compute.id} ({compute.memory_gb:g} GB): "
                "choose hardware with more memory or a smaller or quantized model"
            )
        if reason == "CrashLoopBackOff" or (
            terminated and terminated.get("exitCode", 0) != 0 and container == FETCH_CONTAINER
        ):
            restarts = status.get("restartCount", 0)
            tail = logs.get(f"{pod['metadata']['name']}/{container}") or terminated.get("message") or ""
            code = terminated.get("exitCode")
            lines = _last_lines(tail)
            exited = f" (exit code {code})" if code is not None else ""
            shown = f"; last log lines:\n{lines}" if lines else ""
            return f"the {role} keeps crashing{exited}, restarted {restarts} times{shown}"
    return None


def _unschedulable(pod: Mapping[str, Any]) -> str | None:
    for condition in pod.get("status", {}).get("conditions", []) or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            if condition.get("reason") != "Unschedulable":
                return None
            message = condition.get("message", "")
            short = sorted({f"insufficient {m}" for m in re.findall(r"Insufficient ([\w./-]+)", message)})
            if short:
                return ", ".join(short)
            if "didn't match" in message or "untolerated taint" in message:
                return "no node matches the hardware's node selector and tolerations (ask your platform team)"
            return _one_line(message) or "no node can run it"
    return None


def _ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions", []) or []
    )


def _init_running(pod: Mapping[str, Any]) -> bool:
    return any(
        s.get("name") == FETCH_CONTAINER and (s.get("state", {}).get("terminated") or {}).get("exitCode") != 0
        for s in pod.get("status", {}).get("initContainerStatuses", []) or []
    )


def _container_statuses(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = pod.get("status", {})
    found = list(status.get("initContainerStatuses", []) or []) + list(status.get("containerStatuses", []) or [])
    return [s for s in found if s.get("name") in (FETCH_CONTAINER, ENGINE_CONTAINER)]


def _rolled_out(deployment: Mapping[str, Any], replicas: int) -> bool:
    status = deployment.get("status", {})
    return bool(
        status.get("observedGeneration", 0) >= deployment.get("metadata", {}).get("generation", 0)
        and status.get("updatedReplicas", 0) >= replicas
        and status.get("replicas", 0) <= replicas
    )


def _progress_deadline_exceeded(deployment: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Progressing" and c.get("status") == "False" and c.get("reason") == "ProgressDeadlineExceeded"
        for c in deployment.get("status", {}).get("conditions", []) or []
    )


def _annotations(pod: Mapping[str, Any]) -> Mapping[str, str]:
    annotations: Mapping[str, str] = pod.get("metadata", {}).get("annotations") or {}
    return annotations


def _created(pod: Mapping[str, Any]) -> datetime:
    stamp = pod.get("status", {}).get("startTime") or pod["metadata"]["creationTimestamp"]
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))


def _last_lines(text: str) -> str:
    return "\n".join(text.rstrip().splitlines()[-LOG_LINES:])


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:300]


def with_conditions(observation: Observation) -> Observation:
    ready = observation.state in (EndpointState.RUNNING, EndpointState.UPDATING, EndpointState.UPDATE_FAILED)
    condition = {
        "type": "Ready",
        "status": "True" if ready and observation.ready_replica else "False",
        "reason": observation.state.value,
        "message": observation.message,
    }
    return replace(observation, conditions=[condition])
