"""The Kubernetes client when the API server cannot be reached, on the real API server: the client is pointed at
a port nobody listens on (connection refused, as while the server restarts), then back.

The outage is logged once and its end once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from core.kube.client import Kube, KubeUnreachable
from tests.fixtures.kube import KubeCluster
from tests.fixtures.postgres import free_port


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
