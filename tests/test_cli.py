"""The `dais` command line: `serve` on the embedded default, and the identity commands against a live API."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.factories import ADMIN_TOKEN
from tests.fixtures.kube import wait_for
from tests.fixtures.postgres import free_port

DAIS = [sys.executable, "-m", "dais"]


def run(*args: str, token: str = ADMIN_TOKEN, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAIS_TOKEN": token, "DAIS_URL": url}
    return subprocess.run([*DAIS, *args], capture_output=True, text=True, env=env, timeout=60)


def test_identity_commands(live_server: LiveServer) -> None:
    url = live_server.url
    assert run("users", "create", "dora", url=url).returncode == 0
    assert json.loads(run("orgs", "create", "labs", "--member", "dora", url=url).stdout)["members"] == ["dora"]
    created = run("tokens", "create", "--user", "dora", "--name", "laptop", "--expires-in-days", "3", url=url)
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)["token"]
    assert "shown only now" in created.stderr
    listed = run("tokens", "list", url=url, token=token)
    assert "laptop" in listed.stdout
    assert "expires" in listed.stdout
    token_id = json.loads(created.stdout)["id"]
    assert run("tokens", "revoke", token_id, url=url, token=token).returncode == 0
    refused = run("tokens", "list", url=url, token=token)
    assert refused.returncode != 0
    assert "401" in refused.stderr
    assert "revoked" in refused.stderr


def test_cli_errors_say_what_to_do(live_server: LiveServer) -> None:
    no_token = subprocess.run(
        [*DAIS, "users", "create", "x", "--url", live_server.url],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "DAIS_TOKEN"},
    )
    assert no_token.returncode != 0
    assert "DAIS_TOKEN" in no_token.stderr
    unreachable = run("users", "create", "x", url=f"http://127.0.0.1:{free_port()}")
    assert "cannot reach" in unreachable.stderr


def start_serve(home: Path, *, gateway_port: int | None = None) -> tuple[subprocess.Popen[str], int]:
    """`dais serve` on SQLite in ``home``, on free ports (the gateway on ``gateway_port`` when given)."""
    port = free_port()
    env = {
        **os.environ,
        "DAIS_HOME": str(home),
        "DAIS_GATEWAY__LISTEN": f"127.0.0.1:{gateway_port or free_port()}",
        "DAIS_GATEWAY__INTERNAL_LISTEN": f"127.0.0.1:{free_port()}",
    }
    env.pop("DAIS_ADMIN_TOKEN", None)
    env.pop("DAIS_DATABASE_URL", None)
    process = subprocess.Popen(
        [*DAIS, "serve", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    return process, port


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process, port = start_serve(tmp_path / "home")
    yield process, f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=20)


def test_serve_starts_on_sqlite_and_prints_the_admin_token_once(serve: tuple[subprocess.Popen[str], str]) -> None:
    process, url = serve
    assert process.stdout is not None
    token = None
    deadline = time.monotonic() + 60
    while token is None and time.monotonic() < deadline:
        line = process.stdout.readline()
        assert line or process.poll() is None, "dais serve exited early"
        found = re.search(r"DAIS_TOKEN=(dais_\S+)", line)
        token = found.group(1) if found else None
    assert token, "no admin token printed"
    ready = None
    while ready is None and time.monotonic() < deadline:
        assert process.poll() is None, "dais serve exited"
        try:
            ready = httpx.get(f"{url}/readyz", timeout=2)
        except httpx.TransportError:
            time.sleep(0.05)  # polling readiness with a deadline
    assert ready is not None
    assert ready.status_code == 200
    whoami = httpx.get(f"{url}/api/whoami-v2", headers={"Authorization": f"Bearer {token}"})
    assert whoami.json()["name"] == "admin"


def test_api_refuses_to_start_on_an_old_schema(tmp_path: Path) -> None:
    env = {**os.environ, "DAIS_HOME": str(tmp_path)}
    env.pop("DAIS_DATABASE_URL", None)
    started = subprocess.run(
        [*DAIS, "api", "--port", str(free_port())], capture_output=True, text=True, env=env, timeout=60
    )
    assert started.returncode == 2
    assert "dais db upgrade" in started.stderr


def test_api_says_so_when_its_database_is_unreachable(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DAIS_HOME": str(tmp_path),
        "DAIS_DATABASE_URL": f"postgresql://dais@127.0.0.1:{free_port()}/dais",  # nothing listens there
    }
    started = subprocess.run(
        [*DAIS, "api", "--port", str(free_port())], capture_output=True, text=True, env=env, timeout=60
    )
    assert started.returncode == 1
    assert "the database is unreachable" in started.stderr
    assert "DAIS_DATABASE_URL" in started.stderr
    assert "Traceback" not in started.stderr


def test_serve_says_so_when_the_gateway_cannot_listen_and_keeps_serving_the_api(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    process, port = start_serve(tmp_path / "home", gateway_port=taken.getsockname()[1])
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        said = ""
        while "gateway did not start" not in said and time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line or process.poll() is None, "dais serve exited early"
            said += line
        assert "DAIS_GATEWAY__LISTEN" in said
        ready = wait_for(
            lambda: _ready(f"http://127.0.0.1:{port}/readyz"), timeout=60, what="the API to serve without a gateway"
        )
        assert ready
    finally:
        process.terminate()
        process.wait(timeout=20)
        taken.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False
