"""The autoscaler process: leader election, then a tick every ``tick_seconds`` (APScheduler) and the wake
fast path (Postgres LISTEN ``dais_wake``, or the in-process bus under ``dais serve`` on SQLite).

Without a cluster to hold a Lease in (``dais serve`` on a laptop) the one process simply acts.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.orm import Session, sessionmaker

from autoscaler import metrics
from autoscaler.policy import PolicyConfig
from autoscaler.sources import HardwareUse, LocalUse, Signals, pods_by_label
from autoscaler.tick import Ticker
from core.db.changes import WAKE_CHANNEL, LocalBus, listen_postgres
from core.db.outage import level, unavailable
from core.domain.timefmt import utc_now
from core.kube.client import Kube, api_client
from core.leadership import Leadership, NotLeader, default_identity
from core.prometheus import PrometheusClient
from core.settings import AutoscalerSettings, Settings

log = logging.getLogger("dais.autoscaler")


def policy_config(settings: AutoscalerSettings) -> PolicyConfig:
    return PolicyConfig(
        up_interval_s=settings.up_interval_seconds,
        down_interval_s=settings.down_interval_seconds,
        stabilization_s=settings.stabilization_seconds,
        tolerance=settings.tolerance,
        hardware_usage=settings.hardware_usage,
        pending_requests=settings.pending_requests,
        utilization_window_s=settings.utilization_window_seconds,
    )


@dataclass
class Autoscaler:
    settings: Settings
    sessions: sessionmaker[Session]
    wake_bus: LocalBus | None = None  # SQLite (`dais serve`): wakes arrive in-process instead of by NOTIFY
    clock: Callable[[], datetime] = utc_now
    identity: str = field(default_factory=default_identity)
    healthy: threading.Event = field(default_factory=threading.Event)
    leading: threading.Event = field(default_factory=threading.Event)
    ticker: Ticker | None = None

    def run(self, stop: threading.Event) -> bool:
        """Runs until ``stop`` (True) or until the lease is lost (False: the process should exit)."""
        config = self.settings.autoscaler
        cluster = self.settings.cluster
        kube = Kube(api_client(cluster.kubeconfig, cluster.context)) if cluster is not None else None
        leadership = Leadership(
            kube,
            namespace=cluster.namespace if cluster is not None else "",
            lease=config,
            identity=self.identity,
            on_leading=lambda leading: metrics.LEADER.set(int(leading)),
        )
        self.healthy.set()
        if not leadership.acquire(stop):
            return True
        lost = leadership.lost
        prometheus = None
        hardware: HardwareUse | LocalUse | None = None
        source = self.settings.prometheus
        if self.settings.runtime == "local":  # the engines are this machine's processes: they say how busy they are
            hardware = LocalUse(config.utilization_window_seconds)
        elif not source.url:
            log.warning("no DAIS_PROMETHEUS__URL: hardware use is missing, only request signals scale")
        elif kube is None or cluster is None:
            log.warning("no cluster: hardware use is missing (pods are found on the cluster), only requests scale")
        else:
            prometheus = PrometheusClient(source.url, timeout=source.timeout_seconds)
            namespace = cluster.namespace
            hardware = HardwareUse(prometheus, config, namespace, pods=lambda: pods_by_label(kube, namespace))
        ticker = self.ticker = Ticker(
            sessions=self.sessions,
            source=Signals(hardware),
            config=policy_config(config),
            clock=self.clock,
            is_leader=leadership.is_leader,
        )
        halt = threading.Event()
        wakes: queue.SimpleQueue[tuple[str, float] | None] = queue.SimpleQueue()
        threading.Thread(target=self._wake_worker, args=(ticker, wakes), name="wakes", daemon=True).start()
        if self.wake_bus is not None:
            self.wake_bus.subscribe(lambda endpoint_id: wakes.put((endpoint_id, time.perf_counter())))
        else:
            threading.Thread(
                target=listen_postgres,
                kwargs={
                    "url": self.settings.effective_database_url,
                    "channel": WAKE_CHANNEL,
                    "on_change": lambda endpoint_id: wakes.put((endpoint_id, time.perf_counter())),
                    "on_gap": lambda: None,  # the next tick wakes whatever has a request in flight
                    "stop": halt,
                },
                name="wake-notifications",
                daemon=True,
            ).start()
        scheduler = BackgroundScheduler(timezone=UTC)
        scheduler.add_job(
            self._tick,
            "interval",
            args=(ticker,),
            seconds=config.tick_seconds,
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,  # a tick that ran long is not followed by a burst of catch-up ticks
            misfire_grace_time=None,
        )
        scheduler.start()
        self.leading.set()
        try:
            while not (stop.is_set() or lost.is_set()):
                stop.wait(1.0)
        finally:
            self.leading.clear()
            halt.set()
            wakes.put(None)
            scheduler.shutdown(wait=True)
            if prometheus is not None:
                prometheus.close()
            leadership.release()
        return not lost.is_set()

    @staticmethod
    def _tick(ticker: Ticker) -> None:
        started = time.perf_counter()
        result = "success"
        try:
            ticker.tick()
        except NotLeader:  # leading is suspended (renewals failing): skip; the lease's keeper sets ``lost`` if lost
            result = "not_leader"
        except Exception as exc:  # a failed tick is retried at the next one; the schedule never dies
            result = "error"
            # An outage of the database is logged once, by its pool's watch (core.db.outage).
            log.log(level(exc, logging.ERROR), "autoscaler tick failed: %s", exc, exc_info=not unavailable(exc))
        finally:
            metrics.TICKS.labels(result=result).inc()
            metrics.TICK_SECONDS.observe(time.perf_counter() - started)

    @staticmethod
    def _wake_worker(ticker: Ticker, wakes: queue.SimpleQueue[tuple[str, float] | None]) -> None:
        while (item := wakes.get()) is not None:
            endpoint_id, arrived = item
            try:
                decision = ticker.wake(endpoint_id)
                metrics.WAKES.labels(result="woken" if decision else "ignored").inc()
                if decision is not None:
                    metrics.WAKE_SECONDS.observe(time.perf_counter() - arrived)
                    log.info("woke %s: %s replica(s)", endpoint_id, decision.replicas)
            except NotLeader:  # suspended: the first tick once leading again scales for requests in flight
                metrics.WAKES.labels(result="not_leader").inc()
            except Exception as exc:
                metrics.WAKES.labels(result="error").inc()
                log.log(
                    level(exc, logging.ERROR),
                    "wake of %s failed (the next tick retries it if a request is in flight): %s",
                    endpoint_id,
                    exc,
                    exc_info=not unavailable(exc),
                )
