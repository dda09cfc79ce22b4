"""The Kubernetes runtime: an endpoint is a Deployment, a Service and a Secret in the endpoints' namespace.

Builds the desired objects (pure, ``controller.desired``), applies only those whose content hash differs from
the cached live object's and deletes owned objects no longer desired (``controller.plan``); reads status from
the cache (``controller.status``), with the previous run's log lines of a crash-looping container.

Nothing is decided on a cache that is not fresh (its watches are down: the API server is away): each step raises
``KubeUnreachable`` instead, so no object is deleted or kept on an outdated view and the status keeps the last
state seen rather than one read from objects that may have changed (or deadlines that passed unseen).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from controller import metrics
from controller.cache import ClusterCache
from controller.desired import HTTP_PORT, BuildConfig, EndpointView, build, object_name
from controller.errors import PermanentError
from controller.plan import plan
from controller.status import (
    LOG_LINES,
    Observation,
    crash_looping,
    observe,
    replicas_seen,
    serving_addresses,
    startup_seconds,
)
from core.domain.catalog import EngineCatalog, HardwareRow
from core.kube.client import Kube, KubeError, KubeUnreachable

log = logging.getLogger("dais.controller")


@dataclass
class KubernetesRuntime:
    kube: Kube
    cache: ClusterCache
    engines: EngineCatalog
    config: BuildConfig
    startup_deadline_seconds: float
    clock: Callable[[], datetime]
    fence: Callable[[], None]  # raises NotLeader: no write without the lease

    def converge(self, view: EndpointView, compute: HardwareRow) -> None:
        self._require_fresh()
        desired = build(view, compute=compute, engines=self.engines, config=self.config)
        for action in plan(desired, self._owned(view.id)):
            if action.obj is None:
                self._delete(action.kind, action.name)
                continue
            self.fence()
            try:
                applied = self.kube.apply(action.obj)
            except KubeError as exc:
                if exc.status in (400, 403, 422):  # the object itself is refused: retrying cannot help
                    raise PermanentError(f"Kubernetes refused the endpoint's {action.kind}: {exc}") from exc
                raise
            metrics.KUBE_WRITES.labels(verb="apply", kind=action.kind).inc()
            self.cache.kinds[action.kind].upsert(applied)

    def remove(self, endpoint_id: str) -> bool:
        self._require_fresh()
        owned = self._owned(endpoint_id)
        for obj in owned:
            self._delete(obj["kind"], obj["metadata"]["name"])
        return not owned  # else the watch reports each deletion, which brings this endpoint back

    def endpoint_ids(self) -> set[str]:
        return self.cache.endpoint_ids()

    def upstream(self, view: EndpointView) -> str | None:
        return f"http://{object_name(view)}.{self.config.namespace}.svc:{HTTP_PORT}"

    def observe(
        self, view: EndpointView, *, paused: bool, compute: HardwareRow | None, build_error: str | None, url: str
    ) -> Observation:
        self._require_fresh()
        deployments = self.cache.of_endpoint("Deployment", view.id)
        pods = self.cache.of_endpoint("Pod", view.id)
        logs = {}
        for pod, container in crash_looping(pods):
            try:
                logs[f"{pod}/{container}"] = self.kube.log(
                    self.config.namespace, pod, container=container, previous=True, tail_lines=LOG_LINES
                )
            except KubeError as exc:  # logs are a courtesy: the kubelet may be gone or deny them
                log.debug("no logs for %s/%s: %s", pod, container, exc)
        observation = observe(
            paused=paused,
            replicas=view.replicas,
            compute=compute,
            deployment=deployments[0] if deployments else None,
            pods=pods,
            logs=logs,
            url=url,
            startup_deadline_seconds=self.startup_deadline_seconds,
            now=self.clock(),
            build_error=build_error,
        )
        return replace(
            observation,
            addresses=serving_addresses(pods),
            startup_seconds=startup_seconds(pods),
            replicas=replicas_seen(pods),
        )

    def _require_fresh(self) -> None:
        if not self.cache.fresh():
            raise KubeUnreachable("the cluster's objects cannot be watched; waiting for the API server")

    def _delete(self, kind: str, name: str) -> None:
        self.fence()
        self.kube.delete(kind, self.config.namespace, name)
        metrics.KUBE_WRITES.labels(verb="delete", kind=kind).inc()

    def _owned(self, endpoint_id: str) -> list[dict[str, Any]]:
        return [
            {**o, "kind": kind}
            for kind in ("Secret", "Service", "Deployment")
            for o in self.cache.of_endpoint(kind, endpoint_id)
        ]
