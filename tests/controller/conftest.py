"""Fixtures of the controller's process tests (``test_controller_process.py``, ``test_apiserver_outage.py``)."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.db.models import Endpoint
from tests.conftest import LiveServer
from tests.controller.test_controller_process import Harness
from tests.fixtures.kube import KubeCluster


@pytest.fixture
def harness(live_server: LiveServer, kube_cluster: KubeCluster, tmp_path: Path) -> Iterator[Harness]:
    """`dais controller` processes to start; the API; a client on the cluster."""
    # Each test gets its own namespace (and lease) and a clean set of endpoints.
    namespace = f"dais-proc-{re.sub(r'[^a-z0-9]', '', tmp_path.name.lower())[-20:]}"
    built = Harness(live_server, kube_cluster, namespace, tmp_path)
    yield built
    for process in built.processes:
        process.stop(signal.SIGKILL)
    with live_server.sessions() as session, session.begin():
        session.query(Endpoint).delete()
    built.api.close()
