"""Tables. Who writes what (ARCHITECTURE.md): the API writes accounts, tokens, endpoints and audit events;
the controller writes ``endpoint_status``, ``endpoint_replicas`` and ``replica_counts``; the controller and the
autoscaler append to ``endpoint_feed``; ``metric_samples`` (the embedded metric history) gets each gateway
replica's traffic rows and the controller's replica rows, and only the controller rolls them up and prunes them
(``core.db.metric_samples``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db.base import Base, JsonDoc, UtcDateTime

ID = String(32)  # uuid4 hex


class Account(Base):
    """A user or an org. Both live in one table so a namespace name is unique across the two."""

    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("kind IN ('user', 'org')", name="kind"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    hub_token: Mapped[bytes | None] = mapped_column(
        LargeBinary, nullable=True, doc="The namespace's Hugging Face token, encrypted; never returned."
    )
    hub_token_updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class Membership(Base):
    __tablename__ = "memberships"

    org_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    endpoint_id: Mapped[str | None] = mapped_column(
        ForeignKey("endpoints.id", ondelete="CASCADE"), nullable=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class Endpoint(Base):
    """The spec in the HF IE shape (secrets excluded), plus user intents (paused, scaled to zero).

    ``generation`` grows on every spec change; writers compare-and-set on it, so no update is lost.
    A deleted endpoint keeps its row (``deleted_at``) until the controller has removed its objects.
    """

    __tablename__ = "endpoints"
    __table_args__ = (
        Index("ix_endpoints_namespace_quota_key", "namespace", "quota_key"),
        Index(
            "uq_endpoints_namespace_name_live",
            "namespace",
            "name",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
        CheckConstraint("generation >= 1", name="generation_positive"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    secrets: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    generation: Mapped[int] = mapped_column(Integer)
    accelerators: Mapped[int] = mapped_column(Integer, doc="numAccelerators × maxReplica, for quota sums")
    quota_key: Mapped[str] = mapped_column(String(160), doc="vendor-region-instanceType")
    resolution: Mapped[dict[str, Any] | None] = mapped_column(
        JsonDoc, nullable=True, doc="What the Hub said at the last model change: commit sha, task, engine, weights."
    )
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    scaled_to_zero: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_by: Mapped[str] = mapped_column(String(64))
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    status: Mapped[EndpointStatus | None] = relationship(lazy="raise", viewonly=True)


class EndpointStatus(Base):
    """Observed state, written only by the controller."""

    __tablename__ = "endpoint_status"

    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    ready_replica: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    target_replica: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    url: Mapped[str | None] = mapped_column(String(512), nullable=True)
    resolved_revision: Mapped[str | None] = mapped_column(String(64), nullable=True)
    observed_generation: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    conditions: Mapped[list[dict[str, Any]]] = mapped_column(JsonDoc, default=list)
    upstream: Mapped[str | None] = mapped_column(
        String(512), nullable=True, doc="The endpoint's Service URL, where the gateway sends its traffic."
    )
    addresses: Mapped[list[str] | None] = mapped_column(
        JsonDoc, nullable=True, doc="Ready pods' ip:port, for the gateway's least-outstanding balancing."
    )
    startup_seconds: Mapped[float | None] = mapped_column(
        Float, nullable=True, doc="How long the latest Ready replica took to start (the gateway's Retry-After)."
    )
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class EndpointScaling(Base):
    """The autoscaler's desired replica count and what it remembers between ticks (written only by it)."""

    __tablename__ = "endpoint_scaling"

    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"), primary_key=True)
    replicas: Mapped[int] = mapped_column(Integer)
    state: Mapped[dict[str, Any]] = mapped_column(JsonDoc, doc="last evaluations and the stabilization window")
    reason: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ScalingDecision(Base):
    """Why the desired count changed: inputs, raw, stabilized and final counts (written only by the autoscaler)."""

    __tablename__ = "scaling_decisions"
    __table_args__ = (Index("ix_scaling_decisions_endpoint_id_id", "endpoint_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    previous: Mapped[int] = mapped_column(Integer)
    raw: Mapped[int] = mapped_column(Integer)
    stabilized: Mapped[int] = mapped_column(Integer)
    final: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    inputs: Mapped[dict[str, Any]] = mapped_column(JsonDoc)


class EndpointActivity(Base):
    """What one gateway replica saw of one endpoint's traffic (written only by it, at most once per 5 s).

    The autoscaler sums the replicas' rows; a row not refreshed for a while is a gone replica's, and only its
    last request time still counts."""

    __tablename__ = "endpoint_activity"

    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(64), primary_key=True, doc="the gateway replica (its host name)")
    last_request_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    in_flight: Mapped[int] = mapped_column(Integer, doc="requests without a response status yet, held ones included")
    pending_mean: Mapped[float] = mapped_column(Float, doc="mean in-flight requests over the last 20 s")
    arrival_rps: Mapped[float] = mapped_column(Float, default=0.0, doc="requests arriving per second, last minute")
    completion_rps: Mapped[float] = mapped_column(
        Float, default=0.0, doc="requests the replicas completed per second, last minute (shed ones, 429 and 503, not)"
    )
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_endpoint_id_id", "endpoint_id", "id"),
        Index("ix_audit_events_namespace_id", "namespace", "id"),  # the namespace's log, newest first
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    endpoint_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    namespace: Mapped[str | None] = mapped_column(String(64), nullable=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    diff: Mapped[list[dict[str, Any]]] = mapped_column(JsonDoc)
    request_id: Mapped[str] = mapped_column(String(128))
    source_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class EndpointReplica(Base):
    """One replica of an endpoint, running or gone, as the controller last observed it (written only by it).

    A gone replica keeps its row (``stopped_at``) for the replica list and the log picker; the controller keeps
    the latest ``GONE_KEPT`` gone ones per endpoint."""

    __tablename__ = "endpoint_replicas"

    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(String(253), primary_key=True, doc="the pod's name, or the local process's id")
    state: Mapped[str] = mapped_column(String(16), doc="starting, ready, restarting, failed or gone")
    host: Mapped[str | None] = mapped_column(String(253), nullable=True, doc="the node, or this machine and port")
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    last_termination: Mapped[str | None] = mapped_column(Text, nullable=True, doc="why it last stopped or restarted")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ReplicaCount(Base):
    """The history usage is computed from: a row each time the controller observes an endpoint's count of
    replicas holding hardware change. A count holds until the endpoint's next row. No foreign key: usage
    outlives the endpoint; a deleted endpoint's last row is a 0."""

    __tablename__ = "replica_counts"
    __table_args__ = (
        Index("ix_replica_counts_namespace_at", "namespace", "at"),
        Index("ix_replica_counts_endpoint_id_at", "endpoint_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    endpoint_id: Mapped[str] = mapped_column(String(32))
    namespace: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(32))
    hardware: Mapped[str] = mapped_column(String(160), doc="the hardware row's id")
    price_per_hour: Mapped[float] = mapped_column(Float, doc="of one replica, when observed")
    replicas: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class FeedEvent(Base):
    """The live feed (``GET /v2/endpoint/{ns}?watch=true``): status changes, scaling decisions and deletions,
    with ids in commit order (``core.db.feed``). Kept ``feed.RETENTION``."""

    __tablename__ = "endpoint_feed"
    __table_args__ = (Index("ix_endpoint_feed_namespace_id", "namespace", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(64))
    endpoint_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16), doc="status, decision or deleted")
    body: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


DURATION_BUCKETS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000)
"""Upper bounds of the gateway's request-duration histogram (``llm_internal_request_duration_ms``), in
milliseconds; +Inf follows the last. ``metric_samples`` keeps one count per bucket."""

DURATION_COLUMNS = tuple(f"duration_b{i:02d}" for i in range(len(DURATION_BUCKETS_MS) + 1))
TRAFFIC_COUNTS = (
    "requests_2xx",
    "requests_3xx",
    "requests_4xx",
    "requests_5xx",
    "failures",
    *DURATION_COLUMNS,
    "prompt_tokens",
    "completion_tokens",
)
TRAFFIC_SECONDS = ("pending_s", "held_s")
REPLICA_SECONDS = (
    "ready_s",
    "desired_s",
    "measured_s",
    "cpu_s",
    "memory_bs",
    "gpu_measured_s",
    "gpu_s",
    "gpu_memory_bs",
)

metric_samples = Table(
    "metric_samples",
    Base.metadata,
    # The read's range scan: one endpoint, one resolution, a span of ``at``.
    Column("endpoint_id", String(32), primary_key=True),
    Column("resolution", SmallInteger, primary_key=True, doc="seconds: 10 (as sampled) or 300 (rolled up)"),
    Column("at", BigInteger, primary_key=True, doc="the sample's end, Unix seconds, a multiple of its resolution"),
    Column("source", String(64), primary_key=True, doc="the gateway replica's name, or 'controller'"),
    *(Column(name, Integer, nullable=True) for name in TRAFFIC_COUNTS),
    *(Column(name, Float, nullable=True) for name in (*TRAFFIC_SECONDS, *REPLICA_SECONDS)),
    Index("ix_metric_samples_resolution_at", "resolution", "at"),  # the rollup's and the pruning's
)
"""The embedded metric history: each figure a sum over the sample's seconds (see ``core.db.metric_samples``). A Core
table, not a mapped class: rows are written and read in bulk, never as objects. No foreign key: a sample written as
its endpoint is deleted must not fail the whole batch; rows of deleted endpoints age out with the rest."""
