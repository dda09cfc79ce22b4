"""Process settings, built once per process (``Settings()``) and passed down; never a module singleton."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.domain.spec import DEFAULT_HARDWARE_USAGE, DEFAULT_PENDING_REQUESTS


class LeaseSettings(BaseModel):
    """``__LEASE_NAME``, ``__LEASE_SECONDS``, ``__RENEW_SECONDS`` of a component that runs one leader."""

    lease_name: str
    lease_seconds: float = Field(default=15, gt=0, description="A standby takes over this long after the leader stops.")
    renew_seconds: float = Field(default=5, gt=0, description="How often the leader renews its lease.")


class PrometheusSettings(BaseModel):
    """``DAIS_PROMETHEUS__*``: the Prometheus the autoscaler reads hardware use from and the API reads each
    endpoint's traffic figures from."""

    url: str | None = Field(
        default=None,
        description="Prometheus HTTP API base URL; without it hardware use is missing and only request signals "
        "scale, and open-metrics shows this process's own figures.",
    )
    timeout_seconds: float = Field(default=5, gt=0, description="One Prometheus query's timeout.")


class ApiSettings(BaseModel):
    """``DAIS_API__*``: how an API process (``dais api``, ``dais serve``) stops on SIGTERM or Ctrl-C."""

    drain_seconds: int = Field(
        default=30,
        ge=0,
        description="Once the listener has closed, requests in flight get this long to finish before they are "
        "cancelled; server-sent streams (the live feed, a logs follow) end at once and their clients reconnect.",
    )
    unready_seconds: float = Field(
        default=0,
        ge=0,
        description="After the signal, /readyz answers 503 while new connections are still served for this long, "
        "so a load balancer that probes readiness stops sending first. 0 under Kubernetes, where the pod's preStop "
        "wait does this (the chart).",
    )


class LogsSettings(BaseModel):
    """``DAIS_LOGS__*``: where endpoint log history on Kubernetes is read from (``core.log_store``)."""

    store_url: str | None = Field(
        default=None,
        description="VictoriaLogs base URL the operator's collector ships pod logs to; without it only live logs "
        "(the current and previous container) are served and the answer says history is not kept.",
    )
    retention_days: int = Field(
        default=30,
        ge=1,
        description="Days of history served; start VictoriaLogs with -retentionPeriod=<days>d to keep as many. "
        "The local runtime deletes its replicas' log files past it.",
    )
    timeout_seconds: float = Field(default=10, gt=0, description="One log store query's timeout.")


class MetricHistorySettings(BaseModel):
    """``DAIS_METRIC_HISTORY__*``: how ``GET /v2/endpoint/{ns}/{name}/metrics`` reads an endpoint's history (from
    ``DAIS_PROMETHEUS__URL`` when set, else from the embedded store the gateway and the controller write)."""

    prometheus_window_seconds: float = Field(
        default=60,
        ge=1,
        description="The shortest window of a rate or an average in the Prometheus queries (a longer step widens "
        "it to the step): at least four of Prometheus's scrape intervals, or short steps show nothing.",
    )


class HubSettings(BaseModel):
    """``DAIS_HUB__*``: the Hugging Face Hub (or a mirror) models come from."""

    url: str | None = Field(
        default=None,
        description="Hub base URL (HF_ENDPOINT for every component); default: HF_ENDPOINT or huggingface.co.",
    )
    offline: Literal["strict", "lenient"] = Field(
        default="strict",
        description="When the Hub is unreachable, specs pinning a commit sha still deploy; strict refuses the rest "
        "(503, retry later), lenient accepts them unverified with the revision as given.",
    )
    retry_deadline_seconds: float = Field(default=15, gt=0, description="How long transient Hub errors are retried.")
    timeout_seconds: float = Field(default=10, gt=0, description="One Hub request's timeout.")
    cache_seconds: float = Field(
        default=60, ge=0, description="How long the API remembers what the Hub said about a model at a revision."
    )
    memory_headroom: float = Field(
        default=0.25, ge=0, le=4, description="Memory beyond the weights for KV cache and working memory (0.25 = 25%)."
    )


class ClusterSettings(BaseModel):
    """The cluster endpoints run in (set as ``DAIS_CONTROLLER__*``; the autoscaler reads ``Settings.cluster``)."""

    kubeconfig: Path | None = Field(
        default=None,
        description="Kubeconfig file; default: in-cluster config. `dais serve` runs no controller without it.",
    )
    context: str | None = Field(default=None, description="Kubeconfig context; default: the current one.")
    namespace: str = Field(default="dais-endpoints", description="Kubernetes namespace holding every endpoint.")


class ControllerSettings(ClusterSettings, LeaseSettings):
    """``DAIS_CONTROLLER__*``: how endpoints become Kubernetes objects."""

    image: str = Field(
        default="ghcr.io/dais-dev/dais:0.1.0",
        description="The Dais image, run as each replica's model-fetch init container.",
    )
    workers: int = Field(default=4, ge=1, description="Endpoints reconciled at once.")
    resync_seconds: float = Field(default=300, gt=0, description="Every endpoint is re-checked this often.")
    startup_deadline_seconds: int = Field(
        default=1800, ge=10, description="A replica not Ready this long after it started: the endpoint failed."
    )
    rollout_deadline_seconds: int = Field(
        default=1800, ge=10, description="An update not rolled out this long: updateFailed (old replicas keep serving)."
    )
    runtime: Literal["kubernetes", "local", "none"] | None = Field(
        default=None,
        description="Where replicas run: Kubernetes objects, child processes on this machine, or nowhere (the API "
        "alone); default: kubernetes with a cluster (a kubeconfig, or in a pod), else local.",
    )
    local_memory_gb: float | None = Field(
        default=None,
        gt=0,
        description="Local runtime: the memory replicas may be promised in all (each its model's size and a "
        "margin); a replica that does not fit waits as pending. Default: 90 % of this machine's.",
    )
    lease_name: str = "dais-controller"
    listen: str = Field(default="127.0.0.1:9091", description="host:port serving /metrics and /healthz.")
    max_backoff_seconds: float = Field(default=300, gt=0, description="Ceiling of the per-endpoint retry delay.")
    history: bool = Field(
        default=True,
        description="Write each endpoint's replicas (and, on the local runtime, their CPU and memory) every 10 s "
        "to the database, and roll up and prune the embedded metric history. Turn off where Prometheus keeps it.",
    )


CPU_UTILIZATION_QUERY = (
    'sum by (pod) (rate(container_cpu_usage_seconds_total{namespace="$namespace", container="engine"}[$window]))'
    ' / sum by (pod) (container_spec_cpu_quota{namespace="$namespace", container="engine"}'
    ' / container_spec_cpu_period{namespace="$namespace", container="engine"}) * 100'
)
GPU_UTILIZATION_QUERY = 'avg by (pod) (avg_over_time(DCGM_FI_DEV_GPU_UTIL{namespace="$namespace"}[$window]))'


class AutoscalerSettings(LeaseSettings):
    """``DAIS_AUTOSCALER__*``: the scaling rules' numbers and where the autoscaler reads load."""

    cpu_query: str = Field(
        default=CPU_UTILIZATION_QUERY,
        description="PromQL giving percent CPU use of its limit per pod (cAdvisor); $namespace and $window are "
        "filled in. One query per tick for every endpoint.",
    )
    gpu_query: str = Field(
        default=GPU_UTILIZATION_QUERY,
        description="PromQL giving percent GPU use per pod (DCGM exporter); $namespace and $window are filled in.",
    )
    pod_label: str = Field(default="pod", description="The label naming the pod in both queries' results.")
    tick_seconds: float = Field(default=15, gt=0, description="How often every endpoint is evaluated.")
    utilization_window_seconds: float = Field(default=60, gt=0, description="Hardware use is averaged over this.")
    up_interval_seconds: float = Field(default=60, gt=0, description="Scale-up is evaluated this often.")
    down_interval_seconds: float = Field(default=120, gt=0, description="Scale-down is evaluated this often.")
    stabilization_seconds: float = Field(
        default=300, ge=0, description="Scale-down follows the highest recommendation of this window."
    )
    tolerance: float = Field(default=0.1, ge=0, lt=1, description="Scale-down ignores changes within this ratio.")
    hardware_usage: float = Field(
        default=DEFAULT_HARDWARE_USAGE, gt=0, le=100, description="Default hardware use threshold, percent."
    )
    pending_requests: float = Field(
        default=DEFAULT_PENDING_REQUESTS, gt=0, description="Default pending requests per replica threshold."
    )
    decisions_kept: int = Field(default=20, ge=1, description="Decisions shown by GET .../scaling.")
    lease_name: str = "dais-autoscaler"
    listen: str = Field(default="127.0.0.1:9092", description="host:port serving /metrics and /healthz.")


class GatewaySettings(BaseModel):
    """``DAIS_GATEWAY__*``: the data plane's listeners, limits and cold-start behaviour."""

    listen: str = Field(default="127.0.0.1:8080", description="host:port of the public listener.")
    internal_listen: str | None = Field(
        default="127.0.0.1:8081",
        description="host:port of the in-cluster listener; the only one serving endpoints with privateService.",
    )
    domain: str | None = Field(
        default=None, description="When set, {name}-{namespace}.{domain} also routes to that endpoint."
    )
    upstream: Literal["pods", "service"] = Field(
        default="pods",
        description="pods: balance over Ready pod addresses (least outstanding requests); service: the "
        "endpoint's Service, balanced by kube-proxy.",
    )
    max_scale_up_timeout_seconds: float = Field(
        default=600, gt=0, description="Ceiling of a request's X-Scale-Up-Timeout."
    )
    hold_queue_size: int = Field(default=256, ge=0, description="Requests held per endpoint during a cold start.")
    cold_start_estimate_seconds: float = Field(
        default=60, gt=0, description="Retry-After for an endpoint that has never started."
    )
    connect_timeout_seconds: float = Field(default=5, gt=0, description="Connecting to an upstream replica.")
    read_timeout_seconds: float = Field(
        default=600, gt=0, description="Longest silence from an upstream while it answers (a stream may last longer)."
    )
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=0, description="Largest request body accepted.")
    max_head_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest request head (request line and headers): 414 or 431 above."
    )
    max_upstream_head_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest response head a replica may send (custom engine images are user code): 502 above.",
    )
    max_connections: int = Field(
        default=10_000,
        ge=1,
        description="Open client connections per listener; past it a new one is answered 503 with Retry-After and "
        "closed. Keep the process's open-file limit above the sum of both listeners' and the upstream connections.",
    )
    header_timeout_seconds: float = Field(
        default=10,
        gt=0,
        description="Time for a request's head to arrive whole, from its first byte (or from the connection's "
        "opening): 408 after it.",
    )
    body_timeout_seconds: float = Field(
        default=60,
        gt=0,
        description="Longest silence while a request body arrives (a large upload may take longer in all): 408.",
    )
    idle_timeout_seconds: float = Field(
        default=75,
        gt=0,
        description="A keep-alive connection without a request is closed after this long. Keep it above the idle "
        "timeout of a load balancer in front (60 s for most cloud ones), so that the balancer closes first.",
    )
    write_timeout_seconds: float = Field(
        default=60,
        gt=0,
        description="Longest a client may leave the answer unread (its socket full) before the connection is closed, "
        "and the replica's with it.",
    )
    drain_seconds: float = Field(
        default=30,
        ge=0,
        description="On SIGTERM, time for requests and streams in flight to finish (those left are cut); keep the "
        "pod's terminationGracePeriodSeconds above it plus the preStop wait.",
    )
    forward_authorization: bool = Field(
        default=False, description="Pass the caller's Authorization header on to the engine."
    )
    cors_origins: list[str] = Field(
        default=["*"],
        description="Origins of the browser pages that may call endpoints (CORS), such as the console's "
        '(["https://dais.example.com"]); "*" any page, [] none. The gateway answers preflights itself and '
        "replaces the engine's CORS headers. Tokens travel only in the Authorization header, never as cookies, "
        "so a page calls with a token only when its user gave it one.",
    )
    token_cache_seconds: float = Field(
        default=4, ge=0, lt=5, description="How long a checked token is remembered (revocations apply within 5 s)."
    )
    poll_seconds: float = Field(default=30, gt=0, description="Safety re-read of the routing table.")
    activity_seconds: float = Field(default=5, ge=1, description="How often activity is written per endpoint.")
    history: bool = Field(
        default=True,
        description="Write each endpoint's traffic every 10 s to the database: the embedded metric history "
        "(GET .../metrics without Prometheus). Turn off where Prometheus keeps the history.",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DAIS_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(default=Path("~/.dais"), description="State directory for the local default.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default: a SQLite file in DAIS_HOME.")
    admin_token: SecretStr | None = Field(
        default=None, description="When set, user 'admin' exists with exactly this token."
    )
    public_url: str = Field(default="http://127.0.0.1:8000", description="How users reach this API.")
    gateway_url: str | None = Field(
        default=None,
        description="How clients reach the gateway; endpoint urls start with it (default: http://{gateway listen}).",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key encrypting secrets at rest; generated into DAIS_HOME for the local default.",
    )
    hardware_catalog: Path | None = Field(default=None, description="YAML hardware catalog; default ships.")
    engine_catalog: Path | None = Field(default=None, description="YAML engine catalog; default ships.")
    model_catalog: Path | None = Field(
        default=None,
        description="YAML model catalog (/api/v1/catalog: models and their deploy recipes); default ships.",
    )
    max_replica_ceiling: int = Field(default=64, ge=1, description="Highest maxReplica a spec may ask for.")
    default_quota_accelerators: int = Field(
        default=16, ge=0, description="Per-namespace accelerator quota for catalog rows that name none."
    )
    db_pool_size: int = Field(default=20, ge=1, description="Connections per process; >= concurrent requests.")
    db_pool_timeout_seconds: float = Field(
        default=10,
        gt=0,
        description="How long an API request waits for a free database connection before it is answered 503 with "
        "Retry-After (the pool is exhausted: too many requests at once for DAIS_DB_POOL_SIZE).",
    )
    api_threads: int = Field(
        default=2,
        ge=1,
        description="Request threads per API process. Handlers are CPU-bound Python between short queries: "
        "more threads than cores only fight over the GIL and starve the event loop.",
    )
    auth_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        description="How long a process remembers a valid token (revocations elsewhere take up to this long).",
    )
    api: ApiSettings = Field(default_factory=ApiSettings)
    controller: ControllerSettings = Field(default_factory=ControllerSettings)
    hub: HubSettings = Field(default_factory=HubSettings)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    logs: LogsSettings = Field(default_factory=LogsSettings)
    metric_history: MetricHistorySettings = Field(default_factory=MetricHistorySettings)
    autoscaler: AutoscalerSettings = Field(default_factory=AutoscalerSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    log_json: bool | None = Field(
        default=None,
        description="JSON log lines; default: JSON unless stderr is a terminal (readable lines for a person at "
        "`make serve`, JSON in containers and files).",
    )
    access_log: bool = Field(default=True, description="One log line per API request, with its id and duration.")
    log_level: str = "INFO"

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'dais.db'}"

    @property
    def endpoint_url_base(self) -> str:
        """Endpoint urls are ``{this}/{namespace}/{name}``."""
        return (self.gateway_url or f"http://{self.gateway.listen}").rstrip("/")

    @property
    def cluster(self) -> ClusterSettings | None:
        """The cluster endpoints run in: a kubeconfig, or the service account of the pod this runs in (the
        variable every pod gets); None with neither (``dais serve`` on one machine)."""
        if self.controller.kubeconfig is None and not os.environ.get("KUBERNETES_SERVICE_HOST"):
            return None
        return self.controller

    @property
    def runtime(self) -> str:
        """Where replicas run (``DAIS_CONTROLLER__RUNTIME``, else Kubernetes when there is a cluster, else local)."""
        return self.controller.runtime or ("kubernetes" if self.cluster is not None else "local")

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")
