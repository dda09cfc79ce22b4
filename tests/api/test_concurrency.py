"""No lost writes under real concurrency: many clients against a live server on PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import LiveServer
from tests.factories import ADMIN_TOKEN, endpoint_body

WORKERS = 12


def http(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)


def test_concurrent_creates_of_one_name_yield_exactly_one(live_server: LiveServer) -> None:
    def create(_: int) -> int:
        with http(live_server) as client:
            return client.post("/v2/endpoint/admin", json=endpoint_body("race")).status_code

    with ThreadPoolExecutor(WORKERS) as pool:
        codes = sorted(pool.map(create, range(WORKERS * 2)))
    assert codes.count(200) == 1
    assert codes.count(409) == WORKERS * 2 - 1


def test_concurrent_updates_lose_no_generation(live_server: LiveServer) -> None:
    with http(live_server) as client:
        assert client.post("/v2/endpoint/admin", json=endpoint_body("gens")).status_code == 200

    def update(i: int) -> int:
        with http(live_server) as client:
            response = client.put("/v2/endpoint/admin/gens", json={"tags": [f"t{i}"]})
            assert response.status_code == 200, response.text
            return int(response.json()["status"]["generation"])

    with ThreadPoolExecutor(WORKERS) as pool:
        generations = sorted(pool.map(update, range(40)))
    assert generations == list(range(2, 42)), "every update got its own generation"
    with http(live_server) as client:
        events = client.get("/v2/endpoint/admin/gens/events", params={"limit": 100}).json()["items"]
    assert len(events) == 41


def test_read_modify_write_with_if_match_keeps_every_change(live_server: LiveServer) -> None:
    """Each writer adds its own env var; If-Match makes a stale writer retry instead of clobbering."""
    with http(live_server) as client:
        assert client.post("/v2/endpoint/admin", json=endpoint_body("rmw")).status_code == 200

    def add_var(i: int) -> int:
        conflicts = 0
        with http(live_server) as client:
            while True:
                current = client.get("/v2/endpoint/admin/rmw")
                env = {**current.json()["model"]["env"], f"VAR_{i}": str(i)}
                response = client.put(
                    "/v2/endpoint/admin/rmw",
                    json={"model": {"env": env}},
                    headers={"If-Match": current.headers["etag"]},
                )
                if response.status_code == 200:
                    return conflicts
                assert response.status_code == 412, response.text
                conflicts += 1

    with ThreadPoolExecutor(8) as pool:
        conflicts = sum(pool.map(add_var, range(16)))
    with http(live_server) as client:
        env = client.get("/v2/endpoint/admin/rmw").json()["model"]["env"]
    assert env == {f"VAR_{i}": str(i) for i in range(16)}
    print(f"{conflicts} stale writes were refused and retried")


def test_concurrent_creates_cannot_overrun_the_quota(live_server: LiveServer) -> None:
    """nvidia-t4 quota is 16 per namespace: 24 racing x4 creates leave exactly 4 standing."""

    def create(i: int) -> int:
        body = endpoint_body(f"q{i}")
        body["compute"].update(instanceType="nvidia-t4", instanceSize="x4")
        with http(live_server) as client:
            return client.post("/v2/endpoint/admin", json=body).status_code

    with ThreadPoolExecutor(WORKERS) as pool:
        codes = list(pool.map(create, range(24)))
    assert codes.count(200) == 4
    assert codes.count(400) == 20
