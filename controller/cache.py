"""Watch-fed caches of the objects the controller owns (an informer, in client-go's words).

Each kind is listed once, then watched from the list's resourceVersion; a 410 Gone (or any broken
watch) relists, and objects that vanished meanwhile count as deleted. Every change enqueues the
endpoint id from the object's ``dais.dev/endpoint-id`` label: the cache only tells reconcile *what* to
look at, reconcile decides. Reads never touch the API server, so a resync of unchanged endpoints is free.

While a kind cannot be watched (the API server is away), its cache keeps the last objects it saw but is
not ``fresh``: the controller acts on no such outdated view (it deletes nothing it cannot see and reports
no state from it). Once the API server answers, the relist makes it fresh again.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import urllib3

from core.kube.client import Kube, KubeError, KubeUnreachable
from core.kube.labels import ENDPOINT_ID, SELECTOR

log = logging.getLogger("dais.controller.cache")

WATCH_SECONDS = 300


def _version(obj: dict[str, Any]) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion", 0))
    except ValueError:  # opaque by contract, numeric in practice
        return 0


class KindCache:
    def __init__(self, kube: Kube, kind: str, namespace: str, on_change: Callable[[str], None]) -> None:
        self.kind = kind
        self._kube = kube
        self._namespace = namespace
        self._on_change = on_change
        self._lock = threading.Lock()
        self._objects: dict[str, dict[str, Any]] = {}
        self._by_endpoint: dict[str, set[str]] = defaultdict(set)
        self.synced = threading.Event()  # listed and watching: the objects are the cluster's

    # -- reads ---------------------------------------------------------------------------------------------

    def of_endpoint(self, endpoint_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [self._objects[n] for n in sorted(self._by_endpoint.get(endpoint_id, ()))]

    def endpoint_ids(self) -> set[str]:
        with self._lock:
            return {k for k, names in self._by_endpoint.items() if names}

    # -- writes (the controller records what it just applied, so a racing pass sees it at once) -----------

    def upsert(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            current = self._objects.get(name)
            if current is not None and _version(current) > _version(obj):
                return  # a late event older than what we hold
            self._store_locked(name, obj)

    def remove(self, obj: dict[str, Any]) -> None:
        with self._lock:
            self._drop_locked(obj["metadata"]["name"])

    # -- the informer loop ---------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        warned = False  # one line per run of failures; the client logs an unreachable server itself, once
        while not stop.is_set():
            try:
                version = self._relist()
                self.synced.set()
                warned = False
                self._watch(version, stop)
            except (KubeError, urllib3.exceptions.HTTPError) as exc:  # the API server is away; relist when back
                if not stop.is_set():
                    self.synced.clear()
                    if not (warned or isinstance(exc, KubeUnreachable)):
                        log.warning("watching %s failed (%s); relisting every second until it works", self.kind, exc)
                        warned = True
                    stop.wait(1.0)
            except Exception:  # the loop must outlive anything; the next relist converges
                self.synced.clear()
                log.exception("watching %s failed; relisting", self.kind)
                stop.wait(1.0)

    def _relist(self) -> str:
        items, version = self._kube.list(self.kind, self._namespace, selector=SELECTOR)
        fresh = {o["metadata"]["name"]: _slim(o) for o in items}
        with self._lock:
            gone = [self._objects[n] for n in set(self._objects) - set(fresh)]
            changed = [o for n, o in fresh.items() if _version(self._objects.get(n, {"metadata": {}})) != _version(o)]
            for obj in gone:
                self._drop_locked(obj["metadata"]["name"])
            for name, obj in fresh.items():
                self._store_locked(name, obj)
        for obj in gone + changed:
            self._notify(obj)
        return version

    def _watch(self, version: str, stop: threading.Event) -> None:
        while not stop.is_set():
            events = self._kube.watch(
                self.kind, self._namespace, selector=SELECTOR, resource_version=version, timeout_seconds=WATCH_SECONDS
            )
            try:
                for kind, obj in events:
                    if stop.is_set():
                        return
                    version = self._handle(kind, obj, version)
            except urllib3.exceptions.ProtocolError:  # the server cut the stream: watch again from where we were
                continue
            except _Expired:
                log.info("%s watch expired (410 Gone); relisting", self.kind)
                return

    def _handle(self, kind: str, obj: dict[str, Any], version: str) -> str:
        """Applies one watch event; returns the resourceVersion to resume from."""
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise _Expired
            raise KubeError(int(code or 500), str(obj.get("message", "")))
        version = str(obj["metadata"]["resourceVersion"])
        if kind == "BOOKMARK":
            return version
        obj = _slim(obj)
        if kind == "DELETED":
            self.remove(obj)
        else:
            self.upsert(obj)
        self._notify(obj)
        return version

    def _notify(self, obj: dict[str, Any]) -> None:
        endpoint_id = (obj["metadata"].get("labels") or {}).get(ENDPOINT_ID)
        if endpoint_id:
            self._on_change(endpoint_id)

    def _store_locked(self, name: str, obj: dict[str, Any]) -> None:
        old = self._objects.get(name)
        if old is not None:
            self._unindex_locked(name, old)
        self._objects[name] = obj
        endpoint_id = (obj["metadata"].get("labels") or {}).get(ENDPOINT_ID)
        if endpoint_id:
            self._by_endpoint[endpoint_id].add(name)

    def _drop_locked(self, name: str) -> None:
        old = self._objects.pop(name, None)
        if old is not None:
            self._unindex_locked(name, old)

    def _unindex_locked(self, name: str, obj: dict[str, Any]) -> None:
        endpoint_id = (obj["metadata"].get("labels") or {}).get(ENDPOINT_ID)
        if endpoint_id and endpoint_id in self._by_endpoint:
            self._by_endpoint[endpoint_id].discard(name)
            if not self._by_endpoint[endpoint_id]:
                del self._by_endpoint[endpoint_id]


class _Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): relist."""


def _slim(obj: dict[str, Any]) -> dict[str, Any]:
    """Drops managedFields (large, never read) to keep a thousand endpoints' objects small in memory."""
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


class ClusterCache:
    """The caches of every kind the controller owns or watches."""

    KINDS = ("Secret", "Service", "Deployment", "Pod")

    def __init__(self, kube: Kube, namespace: str, on_change: Callable[[str], None]) -> None:
        self.kinds = {kind: KindCache(kube, kind, namespace, on_change) for kind in self.KINDS}

    def start(self, stop: threading.Event) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=c.run, args=(stop,), name=f"watch-{c.kind}", daemon=True)
            for c in self.kinds.values()
        ]
        for thread in threads:
            thread.start()
        return threads

    def wait_synced(self, timeout: float) -> bool:
        return all(c.synced.wait(timeout) for c in self.kinds.values())

    def fresh(self) -> bool:
        """Every kind listed and watched: what the cache holds is what the cluster holds."""
        return all(c.synced.is_set() for c in self.kinds.values())

    def of_endpoint(self, kind: str, endpoint_id: str) -> list[dict[str, Any]]:
        return self.kinds[kind].of_endpoint(endpoint_id)

    def owned(self, endpoint_id: str) -> list[dict[str, Any]]:
        """Everything the controller applied for one endpoint (pods excluded: their Deployment owns them)."""
        return [o for kind in ("Secret", "Service", "Deployment") for o in self.kinds[kind].of_endpoint(endpoint_id)]

    def endpoint_ids(self) -> set[str]:
        return set().union(*(c.endpoint_ids() for c in self.kinds.values()))
