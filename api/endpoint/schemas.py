"""What the endpoint routes answer, as models for OpenAPI. The handlers write the endpoint object's bytes
themselves (``render.py``); these describe them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from api.schemas import Out
from core.domain.enums import EndpointState
from core.domain.spec import Compute, EndpointSpec


class Actor(Out):
    id: str
    name: str


class EndpointStatusRead(Out):
    created_at: str = Field(description="RFC 3339, UTC.")
    created_by: Actor
    updated_at: str
    updated_by: Actor
    private: None = Field(description="Always null: private links are not offered.")
    state: EndpointState
    message: str = Field(description="What is happening, and when something is wrong, what to do.")
    ready_replica: int
    target_replica: int
    generation: int = Field(description="Bumped by every change of the spec.")
    observed_generation: int = Field(description="The generation the controller last acted on (0: none yet).")
    requested_revision: str | None = Field(description="The branch, tag or sha asked for; null: the default branch.")
    resolved_revision: str | None = Field(description="The commit sha the revision was pinned to.")
    url: str | None = Field(default=None, description="Where to send requests, once the endpoint serves.")
    last_activity: str | None = Field(
        default=None, description="The latest request through the gateway (null: none yet, or a write's answer)."
    )


class EndpointCompute(Compute):
    id: str = Field(description="The hardware row it runs on, as `GET /v2/provider/{namespace}` lists it.")


class EndpointWithStatus(EndpointSpec):
    """The endpoint as stored (secret values shown as ``********``) with its status."""

    compute: EndpointCompute
    account_id: str | None = None
    health_route: str
    status: EndpointStatusRead


class EndpointList(Out):
    items: list[EndpointWithStatus]
    next: str | None = Field(
        default=None, description="With `limit`: the cursor of the next page (null on the last page)."
    )


class ReplicaRead(Out):
    id: str = Field(description="The pod's name, or the local process's id (the logs' `replica`).")
    state: str = Field(description="pending, starting, ready, restarting, failed or gone.")
    host: str | None = Field(description="The node, or this machine's address and port.")
    started_at: datetime | None
    stopped_at: datetime | None = Field(description="When it was seen gone (null: it runs).")
    restarts: int
    last_termination: str | None = Field(description="Why it last exited, with the exit code.")


class ReplicaList(Out):
    items: list[ReplicaRead]


class ScalingPolicy(Out):
    min_replica: int
    max_replica: int
    scale_to_zero_timeout: int | None
    measure: dict[str, float] = Field(description="hardwareUsage (percent) or pendingRequests (per replica).")
    tick_seconds: float
    utilization_window_seconds: float
    up_interval_seconds: float
    down_interval_seconds: float
    stabilization_seconds: float
    tolerance: float


class ScalingDecisionRead(Out):
    time: str
    previous: int
    raw: int
    stabilized: int
    final: int
    reason: str
    inputs: dict[str, Any]


class ScalingView(Out):
    policy: ScalingPolicy
    paused: bool
    scaled_to_zero: bool
    desired_replicas: int | None
    reason: str
    updated_at: str | None
    decisions: list[ScalingDecisionRead] = Field(description="Newest first.")


class AuditEventRead(Out):
    id: int
    time: str
    actor: str
    action: str
    diff: list[dict[str, Any]] = Field(description="Changed paths with old and new values (secrets redacted).")
    request_id: str
    source_address: str | None


class AuditPage(Out):
    items: list[AuditEventRead]
    next: int | None = Field(description="Pass as `before` for the next page; null on the last.")


class ReplicaLog(Out):
    id: str
    started_at: datetime
    stopped_at: datetime | None = Field(description="None while it runs.")
    restarts: int
    exit_code: int | None = Field(description="Of its last exit; negative: killed by that signal.")


class LogLineOut(Out):
    time: datetime
    replica: str
    stream: str = Field(description="stdout or stderr")
    line: str


class EndpointLogs(Out):
    """The endpoint's replicas (gone ones too, with their times) and its log lines, oldest first."""

    source: str = Field(description="Where the lines come from: local, or none and why.")
    replicas: list[ReplicaLog]
    lines: list[LogLineOut]
