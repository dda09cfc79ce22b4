"""The real ``huggingface_hub`` client and ``hf endpoints`` CLI against the live API (reference §1, §2, §5.1, §7, §8).

Every call of reference §7 (except the experimental catalog) goes through ``HfApi`` and ``InferenceEndpoint``
unchanged; the client is only redirected (§1). No controller runs here, so endpoints stay ``pending`` unless a test
writes the controller's observation (``endpoint_status``) itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import huggingface_hub
import huggingface_hub.constants as hf_constants
import pytest
from huggingface_hub import (
    HfApi,
    InferenceEndpoint,
    InferenceEndpointError,
    InferenceEndpointStatus,
    InferenceEndpointTimeoutError,
)
from huggingface_hub.errors import BadRequestError, HfHubHTTPError
from sqlalchemy import Engine, select, text

from core.db.models import Endpoint, EndpointStatus
from tests.conftest import LiveServer
from tests.factories import ADMIN_TOKEN

NS = "admin"
REPO = "openai-community/gpt2"
# CPU rows for most tests (quota 32); the GPU row of the reference's examples where the hardware matters.
CPU: dict[str, str] = {
    "vendor": "aws",
    "region": "us-east-1",
    "accelerator": "cpu",
    "instance_type": "intel-spr",
    "instance_size": "x2",
}
L4: dict[str, str] = {**CPU, "accelerator": "gpu", "instance_type": "nvidia-l4", "instance_size": "x1"}
SECRET_VALUE = "s3cr3t-value-never-echoed"
HF_BIN = Path(sys.executable).with_name("hf")
CLI_TIMEOUT = 60


def unique(prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    assert len(name) <= 32
    return name


@pytest.fixture
def hf(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> HfApi:
    """An ``HfApi`` redirected to the live server (reference §1 recipe), with ``HF_TOKEN`` set (§2 gotcha)."""
    monkeypatch.setattr(hf_constants, "INFERENCE_ENDPOINTS_ENDPOINT", f"{live_server.url}/v2")
    # Read at import time, so patch the constants as well as the environment.
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_TELEMETRY", True)
    # No stored login may stand in for a missing token.
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
    monkeypatch.delenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", raising=False)
    monkeypatch.setenv("HF_TOKEN", ADMIN_TOKEN)
    return HfApi(endpoint=live_server.url, token=ADMIN_TOKEN)


def create(hf: HfApi, name: str, **overrides: Any) -> InferenceEndpoint:
    kwargs: dict[str, Any] = {
        "repository": REPO,
        "framework": "pytorch",
        "task": "text-generation",
        "namespace": NS,
        **CPU,
    }
    kwargs.update(overrides)
    return hf.create_inference_endpoint(name, **kwargs)


def observe(live_server: LiveServer, name: str, *, state: str, url: str | None = None) -> None:
    """Writes what the controller would have observed for the endpoint's current generation."""
    with live_server.sessions() as session, session.begin():
        endpoint = session.scalars(
            select(Endpoint).where(Endpoint.namespace == NS, Endpoint.name == name, Endpoint.deleted_at.is_(None))
        ).one()
        ready = 1 if state == "running" else 0
        session.merge(
            EndpointStatus(
                endpoint_id=endpoint.id,
                state=state,
                message=None,
                ready_replica=ready,
                target_replica=1,
                url=url,
                observed_generation=endpoint.generation,
                conditions=[],
                updated_at=datetime.now(UTC),
            )
        )


def assert_recent(moment: datetime) -> None:
    assert isinstance(moment, datetime)
    assert moment.tzinfo is not None
    assert abs(datetime.now(UTC) - moment) < timedelta(minutes=5)


# -- create / get / list / fetch -----------------------------------------------------------------------


def test_create_returns_a_parsed_pending_endpoint(hf: HfApi) -> None:
    name = unique("create")
    ep = create(
        hf,
        name,
        min_replica=0,
        max_replica=2,
        scale_to_zero_timeout=15,
        env={"MAX_TOKENS": "64"},
        secrets={"API_KEY": SECRET_VALUE},
        type="private",
        **L4,
    )
    assert isinstance(ep, InferenceEndpoint)
    assert ep.name == name
    assert ep.namespace == NS
    assert ep.repository == REPO
    assert ep.framework == "pytorch"
    assert ep.revision is None
    assert ep.task == "text-generation"
    assert ep.status == InferenceEndpointStatus.PENDING
    assert ep.url is None
    assert ep.type == "private"
    assert ep.health_route == "/health"
    assert_recent(ep.created_at)
    assert ep.updated_at == ep.created_at
    scaling = ep.raw["compute"]["scaling"]
    assert (scaling["minReplica"], scaling["maxReplica"], scaling["scaleToZeroTimeout"]) == (0, 2, 15)
    assert ep.raw["compute"]["id"] == "aws-us-east-1-nvidia-l4-x1"
    assert ep.raw["provider"] == {"vendor": "aws", "region": "us-east-1"}
    assert ep.raw["model"]["env"] == {"MAX_TOKENS": "64"}
    assert set(ep.raw["model"]["secrets"]) == {"API_KEY"}
    assert SECRET_VALUE not in json.dumps(ep.raw)
    with pytest.raises(InferenceEndpointError):
        _ = ep.client  # no url while pending


def test_get_returns_the_same_endpoint_without_secret_values(hf: HfApi) -> None:
    name = unique("get")
    created = create(hf, name, secrets={"API_KEY": SECRET_VALUE}, revision="main")
    got = hf.get_inference_endpoint(name, namespace=NS)
    assert got.name == name
    assert got.namespace == NS
    assert got.repository == REPO
    assert got.revision == "main"
    assert got.status == "pending"
    assert got.url is None
    assert got.created_at == created.created_at
    assert set(got.raw["model"]["secrets"]) == {"API_KEY"}
    assert SECRET_VALUE not in json.dumps(got.raw)


def test_fetch_refreshes_the_object_in_place(hf: HfApi) -> None:
    name = unique("fetch")
    ep = create(hf, name, max_replica=1)
    hf.update_inference_endpoint(name, namespace=NS, max_replica=2)
    assert ep.raw["compute"]["scaling"]["maxReplica"] == 1
    assert ep.fetch() is ep
    assert ep.raw["compute"]["scaling"]["maxReplica"] == 2
    assert ep.updated_at >= ep.created_at
    assert ep.status == "pending"


def test_list_with_namespace_and_through_whoami(hf: HfApi) -> None:
    names = {unique("list-a"), unique("list-b")}
    for name in names:
        create(hf, name)
    given = hf.list_inference_endpoints(namespace=NS)
    assert names <= {e.name for e in given}
    assert all(isinstance(e, InferenceEndpoint) and e.namespace == NS for e in given)
    assert hf.whoami()["name"] == NS
    defaulted = hf.list_inference_endpoints()  # namespace from GET /api/whoami-v2
    assert {e.name for e in defaulted} == {e.name for e in given}
    assert all(e.namespace == NS for e in defaulted)
    everywhere = hf.list_inference_endpoints(namespace="*")  # whoami, then the user's and each org's namespace
    assert names <= {e.name for e in everywhere}


def test_module_level_functions_use_the_global_api(hf: HfApi) -> None:
    name = unique("module")
    ep = huggingface_hub.create_inference_endpoint(name, repository=REPO, framework="pytorch", namespace=NS, **CPU)
    assert ep.status == "pending"
    assert huggingface_hub.get_inference_endpoint(name, namespace=NS).name == name
    assert name in {e.name for e in huggingface_hub.list_inference_endpoints(namespace=NS)}


# -- update --------------------------------------------------------------------------------------------


def test_update_merges_compute_and_replaces_env(hf: HfApi) -> None:
    name = unique("update")
    create(hf, name, min_replica=1, max_replica=1, env={"A": "1"}, secrets={"API_KEY": SECRET_VALUE})
    ep = hf.update_inference_endpoint(name, namespace=NS, max_replica=3, env={"B": "2"})
    assert ep.name == name
    assert ep.status == "pending"
    scaling = ep.raw["compute"]["scaling"]
    assert (scaling["minReplica"], scaling["maxReplica"]) == (1, 3)
    assert ep.raw["compute"]["instanceType"] == "intel-spr"  # merged, not replaced
    assert ep.raw["model"]["env"] == {"B": "2"}  # maps replace wholesale
    assert set(ep.raw["model"]["secrets"]) == {"API_KEY"}  # untouched by an update that omits them
    assert ep.repository == REPO
    assert SECRET_VALUE not in json.dumps(ep.raw)
    assert hf.get_inference_endpoint(name, namespace=NS).raw["compute"]["scaling"]["maxReplica"] == 3


SLOW_COMMIT_SQL = [
    "CREATE FUNCTION dais_test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$",
    # Deferred: runs inside COMMIT. Every write records an audit event, so every write's commit takes 0.3 s.
    "CREATE CONSTRAINT TRIGGER dais_test_slow_commit AFTER INSERT ON audit_events "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION dais_test_slow_commit()",
]


@pytest.fixture
def slow_commits(live_server: LiveServer, engine: Engine) -> Iterator[None]:
    """Commits that take a moment, as with synchronous replication or a busy disk (the test server runs fsync=off)."""
    with engine.begin() as conn:
        for statement in SLOW_COMMIT_SQL:
            conn.execute(text(statement))
    yield
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER IF EXISTS dais_test_slow_commit ON audit_events"))
        conn.execute(text("DROP FUNCTION IF EXISTS dais_test_slow_commit()"))


@pytest.mark.usefixtures("slow_commits")
def test_each_write_is_committed_before_its_response(hf: HfApi) -> None:
    """The client reads right after it writes (create then wait(), pause then fetch()): a 2xx means committed."""
    name = unique("read-after-write")
    create(hf, name, max_replica=1)
    assert hf.get_inference_endpoint(name, namespace=NS).name == name  # 404 if the create is not committed yet
    hf.update_inference_endpoint(name, namespace=NS, max_replica=2)
    assert hf.get_inference_endpoint(name, namespace=NS).raw["compute"]["scaling"]["maxReplica"] == 2
    hf.pause_inference_endpoint(name, namespace=NS)
    assert hf.get_inference_endpoint(name, namespace=NS).status == "paused"


def test_object_update_mutates_the_object(hf: HfApi) -> None:
    name = unique("obj-update")
    ep = create(hf, name)
    assert ep.update(min_replica=0, max_replica=2, scale_to_zero_timeout=30, secrets={"TOKEN": SECRET_VALUE}) is ep
    assert ep.raw["compute"]["scaling"]["minReplica"] == 0
    assert ep.raw["compute"]["scaling"]["scaleToZeroTimeout"] == 30
    assert set(ep.raw["model"]["secrets"]) == {"TOKEN"}
    assert SECRET_VALUE not in json.dumps(ep.raw)


# -- pause / resume / scale to zero --------------------------------------------------------------------


def test_lifecycle_through_hfapi(hf: HfApi) -> None:
    name = unique("life")
    create(hf, name, min_replica=0, max_replica=1, scale_to_zero_timeout=15)
    paused = hf.pause_inference_endpoint(name, namespace=NS)
    assert paused.status == InferenceEndpointStatus.PAUSED
    assert paused.url is None
    resumed = hf.resume_inference_endpoint(name, namespace=NS, running_ok=False)
    assert resumed.status == InferenceEndpointStatus.PENDING
    scaled = hf.scale_to_zero_inference_endpoint(name, namespace=NS)
    assert scaled.status == InferenceEndpointStatus.SCALED_TO_ZERO
    assert hf.get_inference_endpoint(name, namespace=NS).status == "scaledToZero"
    woken = hf.resume_inference_endpoint(name, namespace=NS, running_ok=False)
    assert woken.status == InferenceEndpointStatus.PENDING


def test_lifecycle_through_object_methods(hf: HfApi) -> None:
    name = unique("obj-life")
    ep = create(hf, name)
    assert ep.pause() is ep
    assert ep.status == "paused"
    assert ep.resume() is ep
    assert ep.status == "pending"
    assert ep.scale_to_zero() is ep
    assert ep.status == "scaledToZero"
    assert ep.resume(running_ok=False).status == "pending"
    assert hf.get_inference_endpoint(name, namespace=NS).status == "pending"


def test_resume_of_a_running_endpoint(hf: HfApi) -> None:
    name = unique("already")
    ep = create(hf, name)
    # running_ok=True: the 400 "already running" is swallowed and the endpoint fetched instead.
    again = hf.resume_inference_endpoint(name, namespace=NS, running_ok=True)
    assert again.name == name
    assert again.status == "pending"
    with pytest.raises(BadRequestError) as raised:
        hf.resume_inference_endpoint(name, namespace=NS, running_ok=False)
    assert raised.value.response.status_code == 400
    assert "already running" in str(raised.value)
    assert isinstance(raised.value, HfHubHTTPError)
    with pytest.raises(BadRequestError, match="already running"):
        ep.resume(running_ok=False)
    assert ep.resume(running_ok=True).status == "pending"


def test_scale_to_zero_of_a_paused_endpoint_is_refused(hf: HfApi) -> None:
    name = unique("paused-stz")
    ep = create(hf, name).pause()
    with pytest.raises(BadRequestError, match="paused"):
        ep.scale_to_zero()
    assert ep.fetch().status == "paused"


# -- delete --------------------------------------------------------------------------------------------


def test_delete_then_get_is_404(hf: HfApi) -> None:
    name = unique("delete")
    create(hf, name)
    hf.delete_inference_endpoint(name, namespace=NS)
    with pytest.raises(HfHubHTTPError) as raised:
        hf.get_inference_endpoint(name, namespace=NS)
    assert raised.value.response.status_code == 404
    assert "not found" in str(raised.value)
    assert name not in {e.name for e in hf.list_inference_endpoints(namespace=NS)}
    with pytest.raises(HfHubHTTPError) as again:
        hf.delete_inference_endpoint(name, namespace=NS)
    assert again.value.response.status_code == 404
    # The name is free again.
    assert create(hf, name).status == "pending"


def test_object_delete(hf: HfApi) -> None:
    name = unique("obj-delete")
    ep = create(hf, name)
    ep.delete()
    with pytest.raises(HfHubHTTPError) as raised:
        ep.fetch()
    assert raised.value.response.status_code == 404


# -- hardware ------------------------------------------------------------------------------------------


def test_hardware_lists_the_catalog_with_quota_use(hf: HfApi) -> None:
    def t4_used() -> int:
        rows = {h.id: h for h in hf.list_inference_endpoints_hardware(namespace=NS)}
        return rows["aws-us-east-1-nvidia-t4-x1"].used_accelerators

    hardware = hf.list_inference_endpoints_hardware(namespace=NS)
    rows = {h.id: h for h in hardware}
    l4 = rows["aws-us-east-1-nvidia-l4-x1"]
    assert (l4.vendor, l4.region, l4.accelerator, l4.instance_type, l4.instance_size) == (
        "aws",
        "us-east-1",
        "gpu",
        "nvidia-l4",
        "x1",
    )
    assert l4.architecture == "Nvidia L4"
    assert l4.num_accelerators == 1
    assert l4.gpu_memory_gb == 24
    assert l4.price_per_hour > 0
    assert l4.status == "available"
    assert l4.max_accelerators >= 1
    assert rows["aws-us-east-1-intel-icl-x1"].status == "deprecated"
    assert {h.vendor for h in hardware} >= {"aws", "gcp"}
    # Omitting the namespace goes through whoami and lists the same rows.
    assert {h.id for h in hf.list_inference_endpoints_hardware()} == set(rows)

    before = t4_used()
    name = unique("quota")
    create(hf, name, **{**L4, "instance_type": "nvidia-t4"}, max_replica=2)
    assert t4_used() == before + 2
    hf.pause_inference_endpoint(name, namespace=NS)
    assert t4_used() == before  # paused endpoints do not count against quota


# -- wait ----------------------------------------------------------------------------------------------


def test_wait_times_out_while_pending(hf: HfApi, monkeypatch: pytest.MonkeyPatch) -> None:
    ep = create(hf, unique("wait"))
    fetched: list[str] = []
    original = ep._api.get_inference_endpoint

    def spy(*args: Any, **kwargs: Any) -> InferenceEndpoint:
        found = original(*args, **kwargs)
        fetched.append(found.status)
        return found

    monkeypatch.setattr(ep._api, "get_inference_endpoint", spy)
    start = time.monotonic()
    with pytest.raises(InferenceEndpointTimeoutError):
        ep.wait(timeout=1, refresh_every=0.2)  # type: ignore[arg-type]
    elapsed = time.monotonic() - start
    assert 1 <= elapsed < 15
    assert len(fetched) >= 3  # it polled GET /v2/endpoint/{ns}/{name}
    assert set(fetched) == {"pending"}
    assert ep.status == "pending"


def test_wait_returns_once_running_and_healthy(hf: HfApi, live_server: LiveServer) -> None:
    name = unique("wait-ok")
    # The health probe is GET {url}/{healthRoute}: point it at the API's own /healthz.
    ep = create(hf, name, custom_image={"url": "ghcr.io/example/app:1", "healthRoute": "/healthz", "port": 8080})
    assert ep.health_route == "/healthz"
    observe(live_server, name, state="initializing", url=live_server.url)
    assert ep.fetch().status == "initializing"
    assert ep.url is None  # a url is published only once the endpoint runs
    observe(live_server, name, state="running", url=live_server.url)
    assert ep.wait(timeout=10, refresh_every=0.2) is ep  # type: ignore[arg-type]
    assert ep.status == InferenceEndpointStatus.RUNNING
    assert ep.url == live_server.url
    assert ep.client.model == live_server.url
    # Resuming a running endpoint with running_ok returns it as it is.
    assert hf.resume_inference_endpoint(name, namespace=NS).status == "running"


@pytest.mark.parametrize(("state", "words"), [("failed", "failed to deploy"), ("updateFailed", "failed to update")])
def test_wait_raises_on_failure_states(hf: HfApi, live_server: LiveServer, state: str, words: str) -> None:
    name = unique("wait-fail")
    ep = create(hf, name)
    observe(live_server, name, state=state)
    with pytest.raises(InferenceEndpointError, match=words):
        ep.wait(timeout=10, refresh_every=0.2)  # type: ignore[arg-type]
    assert ep.status == state


# -- error paths ---------------------------------------------------------------------------------------


def test_duplicate_create_is_409(hf: HfApi) -> None:
    name = unique("dup")
    create(hf, name)
    with pytest.raises(HfHubHTTPError) as raised:
        create(hf, name)
    assert raised.value.response.status_code == 409
    assert not isinstance(raised.value, BadRequestError)
    assert "already exists" in str(raised.value)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"min_replica": 3, "max_replica": 1}, "minReplica"),
        ({"min_replica": 1, "scale_to_zero_timeout": 15}, "scaleToZeroTimeout"),
        ({"instance_type": "nvidia-nope"}, "compute"),
        ({"env": {"1BAD": "x"}}, "model.env"),
    ],
)
def test_bad_input_is_a_bad_request_naming_the_field(hf: HfApi, overrides: dict[str, Any], field: str) -> None:
    name = unique("bad")
    with pytest.raises(BadRequestError) as raised:
        create(hf, name, **overrides)
    assert raised.value.response.status_code == 400
    assert field in str(raised.value)
    with pytest.raises(HfHubHTTPError) as missing:
        hf.get_inference_endpoint(name, namespace=NS)
    assert missing.value.response.status_code == 404  # nothing was created


def test_bad_name_is_a_bad_request(hf: HfApi) -> None:
    with pytest.raises(BadRequestError) as raised:
        create(hf, "Not_A_Valid_Name")
    assert "name" in str(raised.value)
    assert "lowercase" in str(raised.value)


def test_bad_update_is_a_bad_request_and_changes_nothing(hf: HfApi) -> None:
    name = unique("bad-update")
    create(hf, name, min_replica=1, max_replica=2)
    with pytest.raises(BadRequestError, match="minReplica"):
        hf.update_inference_endpoint(name, namespace=NS, min_replica=5)
    assert hf.get_inference_endpoint(name, namespace=NS).raw["compute"]["scaling"]["minReplica"] == 1


def test_bad_token_is_401(live_server: LiveServer, hf: HfApi) -> None:
    bad = HfApi(endpoint=live_server.url, token="not-a-real-token")
    with pytest.raises(HfHubHTTPError) as raised:
        bad.get_inference_endpoint("anything", namespace=NS, token="not-a-real-token")
    assert raised.value.response.status_code == 401
    assert "invalid token" in str(raised.value)
    with pytest.raises(HfHubHTTPError) as listed:
        bad.list_inference_endpoints(namespace=NS, token="not-a-real-token")
    assert listed.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as whoami:
        bad.list_inference_endpoints(token="not-a-real-token")  # fails at GET /api/whoami-v2
    assert whoami.value.response.status_code == 401


def test_missing_token_is_401(hf: HfApi) -> None:
    with pytest.raises(HfHubHTTPError) as raised:
        hf.list_inference_endpoints(namespace=NS, token=False)
    assert raised.value.response.status_code == 401
    assert "missing token" in str(raised.value)
    with pytest.raises(HfHubHTTPError) as hardware:
        hf.list_inference_endpoints_hardware(namespace=NS, token=False)
    assert hardware.value.response.status_code == 401


def test_returned_objects_carry_only_the_method_token(
    hf: HfApi, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reference §2 gotcha: ``HfApi(token=...)`` is not carried into the objects it returns."""
    name = unique("gotcha")
    implicit = create(hf, name)
    explicit = hf.get_inference_endpoint(name, namespace=NS, token=ADMIN_TOKEN)
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HfHubHTTPError) as raised:
        implicit.fetch()  # a fresh HfApi(), no HF_TOKEN, no stored login: no Authorization header at all
    assert raised.value.response.status_code == 401
    assert "missing token" in str(raised.value)
    assert explicit.fetch().name == name
    assert explicit.pause().status == "paused"


# -- the `hf endpoints` CLI ----------------------------------------------------------------------------

SITECUSTOMIZE = """\
import os

if os.environ.get("DAIS_TEST_IE_ENDPOINT"):
    import huggingface_hub.constants

    huggingface_hub.constants.INFERENCE_ENDPOINTS_ENDPOINT = os.environ["DAIS_TEST_IE_ENDPOINT"]
"""


@pytest.fixture
def cli_env(live_server: LiveServer, tmp_path: Path) -> dict[str, str]:
    """The environment of an ``hf`` process pointed at the live server through a ``sitecustomize.py`` (§1)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.pop("PYTHONPATH", None)
    env.update(
        {
            "PYTHONPATH": str(site),
            "DAIS_TEST_IE_ENDPOINT": f"{live_server.url}/v2",
            "HF_ENDPOINT": live_server.url,
            "HF_TOKEN": ADMIN_TOKEN,
            "HF_HOME": str(tmp_path / "hf-home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_UPDATE_CHECK": "1",
            "NO_COLOR": "1",
        }
    )
    return env


def hf_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HF_BIN), "endpoints", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def test_cli_deploy_describe_and_ls(cli_env: dict[str, str], hf: HfApi) -> None:
    name = unique("cli")
    deployed = hf_cli(
        cli_env,
        "deploy",
        name,
        "--repo",
        REPO,
        "--framework",
        "pytorch",
        "--accelerator",
        "gpu",
        "--instance-type",
        "nvidia-l4",
        "--instance-size",
        "x1",
        "--region",
        "us-east-1",
        "--vendor",
        "aws",
        "--namespace",
        NS,
        "--task",
        "text-generation",
        "--min-replica",
        "0",
        "--max-replica",
        "2",
        "--scale-to-zero-timeout",
        "15",
        "--env",
        "MAX_TOKENS=64",
        "--secrets",
        f"API_KEY={SECRET_VALUE}",
        "--type",
        "private",
    )
    assert deployed.returncode == 0, deployed.stderr
    raw = json.loads(deployed.stdout)
    assert raw["name"] == name
    assert raw["status"]["state"] == "pending"
    assert raw["model"]["repository"] == REPO
    assert raw["model"]["env"] == {"MAX_TOKENS": "64"}
    assert set(raw["model"]["secrets"]) == {"API_KEY"}
    assert raw["compute"]["scaling"]["scaleToZeroTimeout"] == 15
    assert raw["type"] == "private"
    assert SECRET_VALUE not in deployed.stdout
    assert hf.get_inference_endpoint(name, namespace=NS).raw["compute"]["id"] == "aws-us-east-1-nvidia-l4-x1"

    described = hf_cli(cli_env, "describe", name, "--namespace", NS)
    assert described.returncode == 0, described.stderr
    shown = json.loads(described.stdout)
    assert shown["name"] == name
    assert shown["status"]["createdAt"] == raw["status"]["createdAt"]
    assert SECRET_VALUE not in described.stdout

    listed = hf_cli(cli_env, "ls", "--namespace", NS, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows[name] == {
        "name": name,
        "model": REPO,
        "status": "pending",
        "task": "text-generation",
        "framework": "pytorch",
        "instance": "nvidia-l4",
        "vendor": "aws",
        "region": "us-east-1",
    }
    plain = hf_cli(cli_env, "ls", "--namespace", NS, "--no-truncate")  # the default table
    assert plain.returncode == 0, plain.stderr
    assert name in plain.stdout


def test_cli_describe_without_namespace_uses_whoami(cli_env: dict[str, str], hf: HfApi) -> None:
    name = unique("cli-whoami")
    create(hf, name)
    described = hf_cli(cli_env, "describe", name)
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout)["name"] == name


def test_cli_pause_resume_delete(cli_env: dict[str, str], hf: HfApi) -> None:
    name = unique("cli-life")
    create(hf, name)
    refused = hf_cli(cli_env, "resume", name, "--namespace", NS, "--fail-if-already-running")
    assert refused.returncode == 400 % 256, refused.stderr
    assert "already running" in refused.stderr
    paused = hf_cli(cli_env, "pause", name, "--namespace", NS)
    assert paused.returncode == 0, paused.stderr
    assert json.loads(paused.stdout)["status"]["state"] == "paused"
    resumed = hf_cli(cli_env, "resume", name, "--namespace", NS)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"]["state"] == "pending"
    deleted = hf_cli(cli_env, "delete", name, "--namespace", NS, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    with pytest.raises(HfHubHTTPError) as raised:
        hf.get_inference_endpoint(name, namespace=NS)
    assert raised.value.response.status_code == 404


def test_cli_errors_exit_with_the_http_status(cli_env: dict[str, str]) -> None:
    missing = hf_cli(cli_env, "describe", unique("cli-missing"), "--namespace", NS)
    assert missing.returncode == 404 % 256  # the CLI exits with the status; POSIX keeps its low byte
    assert "not found" in missing.stderr
    unauthorized = hf_cli({**cli_env, "HF_TOKEN": "not-a-real-token"}, "ls", "--namespace", NS)
    assert unauthorized.returncode == 401 % 256
    assert "invalid token" in unauthorized.stderr


def test_cli_deploy_bad_input_fails_with_the_server_message(cli_env: dict[str, str]) -> None:
    name = unique("cli-bad")
    # `deploy` lets the HTTP error propagate (reference §8): a traceback and exit status 1.
    failed = hf_cli(
        cli_env,
        "deploy",
        name,
        "--repo",
        REPO,
        "--framework",
        "pytorch",
        "--namespace",
        NS,
        "--min-replica",
        "3",
        "--max-replica",
        "1",
        *(f"--{k.replace('_', '-')}={v}" for k, v in CPU.items()),
    )
    assert failed.returncode != 0
    assert "minReplica" in failed.stderr


def test_cli_hardware(cli_env: dict[str, str]) -> None:
    listed = hf_cli(cli_env, "hardware", "--namespace", NS, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    l4 = rows["aws-us-east-1-nvidia-l4-x1"]
    assert (l4["vendor"], l4["region"], l4["accelerator"], l4["instance_type"], l4["instance_size"]) == (
        "aws",
        "us-east-1",
        "gpu",
        "nvidia-l4",
        "x1",
    )
    assert l4["quota"] == f"{l4['used_accelerators']}/{l4['max_accelerators']}"
    assert "aws-us-east-1-intel-icl-x1" not in rows  # deprecated rows are hidden without --all
    everything = hf_cli(cli_env, "hardware", "--namespace", NS, "--all", "--format", "json")
    assert everything.returncode == 0, everything.stderr
    all_rows = {row["id"]: row for row in json.loads(everything.stdout)}
    assert all_rows["aws-us-east-1-intel-icl-x1"]["status"] == "deprecated"
    assert set(rows) < set(all_rows)
    filtered = hf_cli(cli_env, "hardware", "--namespace", NS, "--accelerator", "gpu", "--vendor", "aws")
    assert filtered.returncode == 0, filtered.stderr
    assert "nvidia-l4" in filtered.stdout
    assert "intel-spr" not in filtered.stdout
