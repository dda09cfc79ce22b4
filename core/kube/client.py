"""A narrow Kubernetes client: the few calls the components make, as raw JSON over the official client's
connection pool, TLS and authentication (kubeconfig, exec plugins or in-cluster).

Raw dicts instead of the generated models: the controller builds and compares plain JSON anyway, and
skipping model (de)serialization keeps a full resync of a thousand endpoints cheap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

FIELD_MANAGER = "dais-controller"
WATCH_MARGIN_SECONDS = 10  # past a watch's own timeout, the silence after which its connection counts as dead

log = logging.getLogger("dais.kube")


@dataclass(frozen=True, slots=True)
class Kind:
    api_version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str | None = None) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        where = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{prefix}{where}/{self.plural}" + (f"/{name}" if name else "")


KINDS = {
    "Deployment": Kind("apps/v1", "deployments"),
    "Service": Kind("v1", "services"),
    "Secret": Kind("v1", "secrets"),
    "Pod": Kind("v1", "pods"),
    "Lease": Kind("coordination.k8s.io/v1", "leases"),
    "Namespace": Kind("v1", "namespaces", namespaced=False),
}


class KubeError(Exception):
    def __init__(self, status: int, message: str, reason: str = "", *, retry_after: float | None = None) -> None:
        """``retry_after``: the wait the API server asked for (``details.retryAfterSeconds`` of its Status, sent
        with 429 TooManyRequests and 5xx ServerTimeout), when it named one."""
        super().__init__(f"Kubernetes API {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


class KubeUnreachable(KubeError):
    """No answer from the API server (refused, reset, timed out, TLS failed): what the call did is unknown."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message, "Unreachable")
        self.args = (f"Kubernetes API unreachable: {message}",)


def api_client(kubeconfig: Path | None, context: str | None = None) -> k8s_client.ApiClient:
    """From a kubeconfig file, or the in-cluster service account when none is given."""
    if kubeconfig is None:
        configuration = k8s_client.Configuration()
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return k8s_client.ApiClient(configuration)
    made: k8s_client.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), context=context
    )
    return made


class Kube:
    def __init__(
        self,
        api: k8s_client.ApiClient,
        *,
        timeout: float = 30.0,
        observe: Callable[[str, str, int], None] = lambda verb, kind, code: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``observe(verb, kind, status code)`` is called after every request (the caller's metrics); the code is 0
        when the API server did not answer (``KubeUnreachable``).

        An outage is logged once when a request first finds the API server unreachable, and once when one reaches
        it again, however many calls fail in between."""
        self.observe = observe
        self._api = api
        self._pool: urllib3.PoolManager = api.rest_client.pool_manager
        self._timeout = timeout
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._unreachable_since: float | None = None

    # -- calls ---------------------------------------------------------------------------------------------

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply, field manager ``dais-controller``, taking over fields others changed."""
        kind = KINDS[obj["kind"]]
        meta = obj["metadata"]
        result: dict[str, Any] = self._call(
            "PATCH",
            kind.path(meta.get("namespace"), meta["name"]),
            kind=obj["kind"],
            verb="apply",
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=obj,
            content_type="application/apply-patch+yaml",  # JSON is YAML
        )
        return result

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self._call("GET", KINDS[kind].path(namespace, name), kind=kind, verb="get")
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind = KINDS[obj["kind"]]
        created: dict[str, Any] = self._call(
            "POST", kind.path(obj["metadata"].get("namespace")), kind=obj["kind"], verb="create", body=obj
        )
        return created

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        """PUT with the object's resourceVersion: fails with 409 if someone else wrote in between."""
        kind = KINDS[obj["kind"]]
        meta = obj["metadata"]
        replaced: dict[str, Any] = self._call(
            "PUT", kind.path(meta.get("namespace"), meta["name"]), kind=obj["kind"], verb="update", body=obj
        )
        return replaced

    def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        """Background propagation: owned ReplicaSets and pods go with it. False when it was already gone."""
        try:
            self._call(
                "DELETE",
                KINDS[kind].path(namespace, name),
                kind=kind,
                verb="delete",
                body={"propagationPolicy": "Background"},
            )
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def list(self, kind: str, namespace: str | None, *, selector: str) -> tuple[list[dict[str, Any]], str]:
        """All matching objects and the list's resourceVersion (to watch from), paged."""
        items: list[dict[str, Any]] = []
        query = {"labelSelector": selector, "limit": "500"}
        while True:
            page = self._call("GET", KINDS[kind].path(namespace), kind=kind, verb="list", query=query)
            items.extend(page.get("items") or [])
            token = page.get("metadata", {}).get("continue")
            if not token:
                return items, str(page["metadata"]["resourceVersion"])
            query = {**query, "continue": token}

    def watch(
        self, kind: str, namespace: str | None, *, selector: str, resource_version: str, timeout_seconds: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Events after ``resource_version`` as (type, object); ends when the server closes the watch.

        An ``ERROR`` event (e.g. 410 Gone: the version is too old) is yielded as is; the caller relists.
        """
        query = {
            "watch": "true",
            "labelSelector": selector,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        # The server ends the watch after timeout_seconds; silence past that is a connection that died without
        # a word (a partition): it fails, and the caller relists, instead of waiting on it for ever.
        response = self._send(
            "GET",
            KINDS[kind].path(namespace),
            kind=kind,
            verb="watch",
            query=query,
            stream=True,
            read_timeout=timeout_seconds + WATCH_MARGIN_SECONDS,
        )
        try:
            if response.status != 200:
                raise _error(response.status, response.read())
            buffer = b""
            for chunk in response.stream(64 * 1024, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        event = orjson.loads(line)
                        yield event["type"], event["object"]
        finally:
            response.close()  # a watch may end half-read: never hand a connection with unread data back
            response.release_conn()

    def log(
        self,
        namespace: str,
        pod: str,
        *,
        container: str,
        previous: bool,
        tail_lines: int | None,
        since_time: datetime | None = None,
        timestamps: bool = False,
    ) -> str:
        """A container's log (its previous run's with ``previous``); with ``timestamps``, each line starts with
        its RFC 3339 time and a space, as the kubelet stores it."""
        query = {"container": container, "previous": str(previous).lower(), "timestamps": str(timestamps).lower()}
        if tail_lines is not None:
            query["tailLines"] = str(tail_lines)
        if since_time is not None:
            query["sinceTime"] = since_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        # Short: the API server proxies this to the node's kubelet, which may be slow or unreachable.
        response = self._send(
            "GET", KINDS["Pod"].path(namespace, pod) + "/log", kind="Pod", verb="log", query=query, read_timeout=5.0
        )
        if response.status != 200:
            raise _error(response.status, response.data)
        return bytes(response.data).decode(errors="replace")

    # -- plumbing ------------------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        kind: str,
        verb: str,
        query: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        response = self._send(method, path, kind=kind, verb=verb, query=query, body=body, content_type=content_type)
        if response.status >= 400:
            raise _error(response.status, response.data)
        return orjson.loads(response.data)

    def _send(
        self,
        method: str,
        path: str,
        *,
        kind: str,
        verb: str,
        query: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
        stream: bool = False,
        read_timeout: float | None = -1,
    ) -> urllib3.BaseHTTPResponse:
        # param_serialize applies the client's authentication (and refreshes expiring credentials).
        _, url, headers, _, _ = self._api.param_serialize(
            method=method,
            resource_path=path,
            header_params={"Accept": "application/json", "Content-Type": content_type},
            auth_settings=["BearerToken"],
        )
        if query:
            url = f"{url}?{urlencode(query)}"
        timeout = urllib3.Timeout(connect=5.0, read=self._timeout if read_timeout == -1 else read_timeout)
        try:
            response = self._pool.request(
                method,
                url,
                body=orjson.dumps(body) if body is not None else None,
                headers=headers,
                preload_content=not stream,
                timeout=timeout,
                retries=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            self.observe(verb, kind, 0)
            self._went_away(exc)
            raise KubeUnreachable(str(exc)) from exc
        self.observe(verb, kind, response.status)
        if self._unreachable_since is not None:
            self._came_back()
        return response

    def _went_away(self, exc: Exception) -> None:
        with self._lock:
            if self._unreachable_since is not None:
                return
            self._unreachable_since = self._monotonic()
        log.warning(
            "the Kubernetes API server %s is unreachable (%s); retrying until it answers",
            self._api.configuration.host,
            exc,
        )

    def _came_back(self) -> None:
        with self._lock:
            since, self._unreachable_since = self._unreachable_since, None
        if since is not None:
            log.info(
                "the Kubernetes API server %s answers again, after %.0fs unreachable",
                self._api.configuration.host,
                self._monotonic() - since,
            )


def _error(status: int, data: bytes) -> KubeError:
    try:
        payload = orjson.loads(data)
        wait = (payload.get("details") or {}).get("retryAfterSeconds")
        return KubeError(
            status,
            str(payload.get("message", "")),
            str(payload.get("reason", "")),
            retry_after=float(wait) if isinstance(wait, int | float) and wait > 0 else None,
        )
    except (orjson.JSONDecodeError, AttributeError):
        return KubeError(status, data[:300].decode(errors="replace"))
