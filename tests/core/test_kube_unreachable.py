"""The Kubernetes client and the lease when the API server cannot be reached, on the real API server: the client
is pointed at a port nobody listens on (connection refused, as while the server restarts), then back.

The outage is logged once and its end once. A leader that cannot renew is fenced at the renew deadline and leads
again when its lease still names it; a standby that saw nothing during the outage waits a whole lease duration
after it before taking over; a suspended leader whose lease another took has lost it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import urllib3

from core.kube.client import Kube, KubeError, KubeUnreachable
from core.kube.lease import LeaderElector
from tests.factories import Ticks
from tests.fixtures.kube import KubeCluster
from tests.fixtures.postgres import free_port

LEASE_SECONDS = 10.0  # renew deadline: two thirds, 6.67 s


@contextmanager
def unreachable(kube: Kube) -> Iterator[None]:
    """While inside: ``kube`` sends its requests to a loopback port nobody listens on."""
    configuration = kube._api.configuration
    server = configuration.host
    configuration.host = f"https://127.0.0.1:{free_port()}"
    try:
        yield
    finally:
        configuration.host = server


def _lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


def test_an_outage_is_logged_once_and_its_end_once(kube_cluster: KubeCluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dais.kube")
    codes: list[tuple[str, str, int]] = []
    kube = Kube(kube_cluster.api_client(), observe=lambda verb, kind, code: codes.append((verb, kind, code)))
    with unreachable(kube):
        for _ in range(3):
            with pytest.raises(KubeUnreachable):
                kube.get("Namespace", None, "default")
        with pytest.raises(KubeUnreachable):
            kube.list("Pod", "default", selector="app=none")
        with pytest.raises(KubeUnreachable):
            next(kube.watch("Pod", "default", selector="app=none", resource_version="0", timeout_seconds=1))
    assert kube.get("Namespace", None, "default") is not None
    assert kube.get("Namespace", None, "default") is not None

    lines = _lines(caplog, "dais.kube")
    assert len(lines) == 2, lines
    assert "is unreachable" in lines[0]
    assert "Connection refused" in lines[0]
    assert "answers again" in lines[1]
    assert [code for _, _, code in codes] == [0, 0, 0, 0, 0, 200, 200]  # 0: no answer, for the caller's metrics
    assert codes[4] == ("watch", "Pod", 0)


@pytest.fixture
def lease_name() -> str:
    return f"outage-{uuid.uuid4().hex[:8]}"


def _elector(cluster: KubeCluster, name: str, identity: str, clock: Ticks) -> LeaderElector:
    return LeaderElector(
        Kube(cluster.api_client()),
        namespace="default",
        name=name,
        identity=identity,
        lease_seconds=LEASE_SECONDS,
        renew_seconds=1.0,
        monotonic=clock,
    )


def test_a_leader_that_cannot_renew_is_fenced_then_leads_again_with_its_lease(
    kube_cluster: KubeCluster, lease_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dais.lease")
    clock = Ticks()
    leader = _elector(kube_cluster, lease_name, "a", clock)
    assert leader.try_acquire()
    with unreachable(leader._kube):
        clock.now += 5
        assert leader.renew()  # not lost: the lease still names it, as far as anyone knows
        assert leader.is_leader()  # within the renew deadline
        clock.now += 2
        assert not leader.is_leader()  # fenced at the deadline, before any standby could take over
        for _ in range(3):
            clock.now += 1
            assert leader.renew()
    lines = _lines(caplog, "dais.lease")
    assert len(lines) == 1, lines  # one line for the whole outage
    assert "could not renew" in lines[0]
    clock.now += 1
    assert leader.renew()
    assert leader.is_leader()
    assert "acting again" in _lines(caplog, "dais.lease")[-1]


def test_a_standby_waits_a_whole_lease_after_the_outage_then_the_old_leader_has_lost(
    kube_cluster: KubeCluster, lease_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    leader_clock, standby_clock = Ticks(), Ticks()
    leader = _elector(kube_cluster, lease_name, "a", leader_clock)
    standby = _elector(kube_cluster, lease_name, "b", standby_clock)
    assert leader.try_acquire()
    assert not standby.try_acquire()  # sees the lease held, from now on its clock
    with unreachable(standby._kube), unreachable(leader._kube):
        standby_clock.now += 2 * LEASE_SECONDS
        assert not standby.try_acquire()  # sees nothing
        leader_clock.now += 2 * LEASE_SECONDS
        assert leader.renew()
        assert not leader.is_leader()
    standby_clock.now += 1
    # Unchanged since it last looked, long ago: but it could not look in between, so it waits a whole lease.
    assert not standby.try_acquire()
    standby_clock.now += LEASE_SECONDS
    with unreachable(leader._kube):  # the old leader stays away: the standby takes over
        assert standby.try_acquire()
        assert standby.is_leader()
    caplog.set_level(logging.INFO, logger="dais.lease")
    assert not leader.renew()  # the lease names b now: lost for good, never resumed
    assert not leader.is_leader()
    assert any("lost the lease" in line and "to b" in line for line in _lines(caplog, "dais.lease"))


def test_a_leader_renewing_in_time_after_the_outage_keeps_its_lease(kube_cluster: KubeCluster, lease_name: str) -> None:
    leader_clock, standby_clock = Ticks(), Ticks()
    leader = _elector(kube_cluster, lease_name, "a", leader_clock)
    standby = _elector(kube_cluster, lease_name, "b", standby_clock)
    assert leader.try_acquire()
    assert not standby.try_acquire()
    with unreachable(standby._kube), unreachable(leader._kube):
        standby_clock.now += 2 * LEASE_SECONDS
        assert not standby.try_acquire()
        leader_clock.now += 2 * LEASE_SECONDS
        assert leader.renew()
    standby_clock.now += 1
    assert not standby.try_acquire()
    leader_clock.now += 1
    assert leader.renew()
    assert leader.is_leader()
    standby_clock.now += LEASE_SECONDS
    assert not standby.try_acquire()
    assert leader.is_leader()


def test_a_watch_whose_server_falls_silent_fails_instead_of_waiting_for_ever(kube_cluster: KubeCluster) -> None:
    """A partition (no FIN, no RST) leaves a watch's connection open and silent: past the watch's own timeout and a
    margin it fails (the informer then relists), rather than keeping a stale cache "fresh" for ever."""
    kube = Kube(kube_cluster.api_client())
    _, version = kube.list("Pod", "default", selector="app=none")  # leaves a kept-alive connection to reuse
    failures: list[Exception] = []

    def watch() -> None:
        try:
            for _ in kube.watch("Pod", "default", selector="app=none", resource_version=version, timeout_seconds=1):
                pass
        except Exception as exc:
            failures.append(exc)

    with kube_cluster.apiserver_frozen():
        reader = threading.Thread(target=watch, daemon=True)
        reader.start()
        reader.join(timeout=60)
        assert not reader.is_alive(), "the watch still waits on a server that says nothing"
    assert failures, "the watch ended as if the server had closed it"
    assert isinstance(failures[0], (KubeError, urllib3.exceptions.HTTPError)), failures  # what the informer catches
    assert kube.get("Namespace", None, "default") is not None  # the server speaks again
