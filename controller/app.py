"""The controller process: leader election, then caches, work queue, workers, notifications, resync.

Every source of work — database notifications, watch events on our objects, the periodic resync and
deadlines a reconcile asks to be woken for — only enqueues an endpoint id; the workers reconcile.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controller import metrics
from controller.cache import ClusterCache
from controller.desired import BuildConfig
from controller.history import ReplicaSampler
from controller.kubernetes import KubernetesRuntime
from controller.local import LocalRuntime, ReplicaUse
from controller.queue import WorkQueue
from controller.reconcile import Reconciler
from controller.retry import Requeue, retry_for
from controller.runtime import Runtime
from core.db import feed
from core.db.changes import LocalBus, listen_postgres
from core.db.crypto import SecretBox
from core.db.models import Endpoint
from core.db.outage import level, unavailable
from core.db.session import transaction
from core.domain.catalog import load_engine_catalog, load_hardware_catalog
from core.domain.timefmt import utc_now
from core.kube.client import Kube, KubeError, KubeUnreachable, api_client
from core.leadership import Leadership, NotLeader, default_identity
from core.retry import Backoff
from core.settings import Settings

log = logging.getLogger("dais.controller")

SYNC_TIMEOUT_SECONDS = 60
RESYNC_BACKOFF = Backoff(base=1.0, cap=30.0)  # a failed resync (the database is away) is tried again sooner
CONFLICTS_AT_ONCE = 3  # conflicts in a row retried at once; past that, backoff (someone keeps writing)


@dataclass
class Controller:
    settings: Settings
    sessions: sessionmaker[Session]
    secret_key: str
    bus: LocalBus | None = None  # dais serve on SQLite; otherwise Postgres LISTEN
    clock: Callable[[], datetime] = utc_now
    identity: str = field(default_factory=default_identity)
    healthy: threading.Event = field(default_factory=threading.Event)
    leading: threading.Event = field(default_factory=threading.Event)  # set once caches synced and workers run
    queue: WorkQueue = field(default_factory=WorkQueue)
    resync_requested: threading.Event = field(default_factory=threading.Event)

    _resync: Callable[[], None] | None = None

    def resync(self) -> None:
        """Enqueues every endpoint (also run every ``resync_seconds`` and after a notification gap)."""
        if self._resync is None:
            raise RuntimeError("the controller is not leading")
        self._resync()

    def run(self, stop: threading.Event) -> bool:
        """Runs until ``stop`` (True) or until the lease is lost (False: the process should exit)."""
        if self.settings.runtime == "local":
            return self._run_local(stop)
        config = self.settings.controller
        kube = Kube(api_client(config.kubeconfig, config.context), observe=metrics.observe_kube)
        self.healthy.set()  # alive, if waiting: a liveness probe must not restart it while the API server is away
        attempt, backoff = 0, Backoff(base=0.5, cap=10.0)
        while True:  # started while the API server is away: wait for it (the client logs the outage once)
            try:
                self._ensure_namespace(kube)
                break
            except KubeUnreachable:
                if stop.wait(backoff.delay(attempt)):
                    return True
                attempt += 1
        leadership = Leadership(
            kube,
            namespace=config.namespace,
            lease=config,
            identity=self.identity,
            on_leading=lambda leading: metrics.LEADER.set(int(leading)),
        )
        if not leadership.acquire(stop):
            return True
        lost = leadership.lost
        halt = threading.Event()  # stops everything below, on stop or on a lost lease

        queue = self.queue = WorkQueue(max_delay=config.max_backoff_seconds)
        cache = ClusterCache(kube, config.namespace, queue.add)
        cache.start(halt)
        if not cache.wait_synced(SYNC_TIMEOUT_SECONDS):
            halt.set()
            raise RuntimeError(f"the Kubernetes caches did not sync within {SYNC_TIMEOUT_SECONDS}s")

        def fence() -> None:
            if not leadership.is_leader():
                raise NotLeader("lost the controller lease; not writing")

        runtime = KubernetesRuntime(
            kube=kube,
            cache=cache,
            engines=load_engine_catalog(self.settings.engine_catalog),
            config=BuildConfig(
                namespace=config.namespace,
                fetch_image=config.image,
                hub_url=self.settings.hub.url,
                startup_deadline_seconds=config.startup_deadline_seconds,
                rollout_deadline_seconds=config.rollout_deadline_seconds,
                hash_key=hashlib.sha256(b"dais-pod-template" + self.secret_key.encode()).digest(),
            ),
            startup_deadline_seconds=config.startup_deadline_seconds,
            clock=self.clock,
            fence=fence,
        )
        reconciler = self._reconciler(runtime, is_leader=leadership.is_leader)

        def ready() -> bool:  # a lease not renewed, or the API server away: the workers wait
            return leadership.is_leader() and cache.fresh()

        try:
            return self._serve(stop, queue, reconciler, runtime.endpoint_ids, lost=lost, halt=halt, ready=ready)
        finally:
            leadership.release()

    def _reconciler(self, runtime: Runtime, *, is_leader: Callable[[], bool]) -> Reconciler:
        return Reconciler(
            sessions=self.sessions,
            runtime=runtime,
            hardware=load_hardware_catalog(
                self.settings.hardware_catalog,
                default_quota=self.settings.default_quota_accelerators,
                machine=self.settings.runtime == "local",
            ),
            box=SecretBox(self.secret_key),
            url_base=self.settings.endpoint_url_base,
            clock=self.clock,
            is_leader=is_leader,
        )

    def _serve(
        self,
        stop: threading.Event,
        queue: WorkQueue,
        reconciler: Reconciler,
        held: Callable[[], set[str]],
        *,
        lost: threading.Event,
        halt: threading.Event,
        ready: Callable[[], bool] = lambda: True,
        use: Callable[[], Mapping[str, ReplicaUse]] | None = None,
    ) -> bool:
        """Workers, notifications, the periodic resync and the metric history's sampler, until ``stop`` or a lost
        lease. The workers reconcile only while ``ready()``."""
        config = self.settings.controller

        def resync() -> None:
            with transaction(self.sessions) as session:
                ids = set(session.scalars(select(Endpoint.id)))
                feed.prune(session, now=self.clock())  # the live feed keeps feed.RETENTION
            for endpoint_id in sorted(ids | held()):  # orphans too: ids with objects but no row
                queue.add(endpoint_id)

        self._resync = resync
        workers = [
            threading.Thread(
                target=self._work, args=(queue, reconciler, ready, halt), name=f"reconcile-{i}", daemon=True
            )
            for i in range(config.workers)
        ]
        for worker in workers:
            worker.start()
        if config.history:
            sampler = ReplicaSampler(self.sessions, clock=self.clock, use=use)
            threading.Thread(target=sampler.run, args=(halt,), name="metric-history", daemon=True).start()
        if self.bus is not None:
            self.bus.subscribe(queue.add)
            resync()
        else:
            url = self.settings.effective_database_url
            threading.Thread(
                target=listen_postgres,
                kwargs={"url": url, "on_change": queue.add, "on_gap": resync, "stop": halt},
                name="notifications",
                daemon=True,
            ).start()
        self.leading.set()
        last_resync, wait, failures = time.monotonic(), config.resync_seconds, 0
        try:
            while not (stop.is_set() or lost.is_set()):
                # Wakes every second to notice stop, a lost lease or a requested resync (SIGHUP).
                asked = self.resync_requested.wait(1.0)
                if asked or time.monotonic() - last_resync >= wait:
                    self.resync_requested.clear()
                    try:
                        resync()
                        wait, failures = config.resync_seconds, 0
                    except Exception as exc:  # the database is away (or a bug): again after a backoff, never exit
                        wait, failures = RESYNC_BACKOFF.delay(failures), failures + 1
                        why = level(exc, logging.ERROR)  # an outage of the database is logged once, by its pool
                        log.log(why, "resync failed (%s); again in %.1fs", exc, wait, exc_info=not unavailable(exc))
                    last_resync = time.monotonic()
        finally:
            self.leading.clear()
            halt.set()
            queue.close()
            for worker in workers:
                worker.join(timeout=30)
        return not lost.is_set()

    def _run_local(self, stop: threading.Event) -> bool:
        """The local runtime: replicas are child processes of this one; it leads alone (one machine)."""
        config = self.settings.controller
        queue = self.queue = WorkQueue(max_delay=config.max_backoff_seconds)
        halt = threading.Event()
        runtime = LocalRuntime(
            home=self.settings.home,
            hub_url=self.settings.hub.url,
            startup_deadline_seconds=config.startup_deadline_seconds,
            clock=self.clock,
            notify=queue.add,
            engines=load_engine_catalog(self.settings.engine_catalog),
            memory_bytes=int(config.local_memory_gb * 2**30) if config.local_memory_gb else None,
            log_retention=timedelta(days=self.settings.logs.retention_days),
        )
        supervisor = threading.Thread(target=runtime.run, args=(halt,), name="local-runtime", daemon=True)
        supervisor.start()
        reconciler = self._reconciler(runtime, is_leader=lambda: True)
        self.healthy.set()
        log.info("controller: local runtime, replicas run as processes on this machine (models in %s)", runtime.models)
        try:
            return self._serve(
                stop, queue, reconciler, runtime.endpoint_ids, lost=threading.Event(), halt=halt, use=runtime.usage
            )
        finally:
            halt.set()
            supervisor.join(timeout=60)

    def _work(self, queue: WorkQueue, reconcile: Reconciler, ready: Callable[[], bool], halt: threading.Event) -> None:
        while True:
            key = queue.get()
            if key is None:
                return
            # Not leading for now (the lease could not be renewed) or not seeing the cluster: wait with this key, the
            # others waiting in the queue, so that nothing is dropped or decided on an outdated view.
            while not ready():
                if halt.wait(0.25):
                    queue.done(key)
                    return
            started = time.perf_counter()
            result = "success"
            try:
                again = reconcile(key)
                queue.forget(key)
                if again is not None:
                    queue.add_after(key, again)
            except NotLeader:  # the lease lapsed mid-pass: again once renewed (a lease taken by another stops all)
                result = "not_leader"
                queue.add(key)
            except Exception as exc:  # the error chooses the retry (controller/retry.py); the loop never dies
                result = "error"
                self._requeue(queue, key, exc)
            finally:
                queue.done(key)
                elapsed = time.perf_counter() - started
                metrics.RECONCILES.labels(result=result).inc()
                metrics.RECONCILE_SECONDS.labels(result=result).observe(elapsed)

    @staticmethod
    def _requeue(queue: WorkQueue, key: str, exc: Exception) -> None:
        retry = retry_for(exc)
        if retry.how is Requeue.NOW and queue.failures(key) < CONFLICTS_AT_ONCE:
            queue.retry(key, after=0)
            log.info("reconcile %s: conflict (%s); again at once", key, exc)
        elif retry.how is Requeue.AFTER:
            queue.add_after(key, retry.delay)
            log.warning("reconcile %s: %s; again in %.1fs", key, exc, retry.delay)
        elif retry.how is Requeue.WAIT:
            delay = queue.retry(key)
            log.debug("reconcile %s: %s; again in %.2fs", key, exc, delay)
        elif retry.how is Requeue.NEVER:
            queue.forget(key)
            log.error("reconcile %s failed: %s; not retried until the endpoint changes", key, exc)
        else:
            delay = queue.retry(key)
            log.error("reconcile %s failed (retry in %.2fs): %s", key, delay, exc, exc_info=True)

    def _ensure_namespace(self, kube: Kube) -> None:
        namespace = self.settings.controller.namespace
        if kube.get("Namespace", None, namespace) is not None:
            return
        try:
            kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        except KubeError as exc:
            if exc.status != 409:
                raise RuntimeError(
                    f"Kubernetes namespace {namespace!r} does not exist and cannot be created ({exc}): create it, "
                    "or set DAIS_CONTROLLER__NAMESPACE to one that exists"
                ) from exc
