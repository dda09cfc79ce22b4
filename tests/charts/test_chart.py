"""charts/dais: lint, render every ci/*-values.yaml and validate each object against the Kubernetes schemas
offline, refuse bad values, install into the test cluster (KWOK pods: images are never pulled), upgrade
(the migration hook runs again), and check each ServiceAccount's permissions with `kubectl auth can-i`."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.fixtures.kube import KubeCluster, assets_dir, wait_for

CHART = Path(__file__).resolve().parents[2] / "charts" / "dais"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
KUBERNETES_VERSION = "1.36.0"  # the test cluster's minor (tests/cluster/versions.env)
CUSTOM_KINDS = {"ServiceMonitor", "HTTPRoute"}  # CRDs: not in the Kubernetes schemas


def helm(*args: str, kubeconfig: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [str(assets_dir() / "helm"), *args]
    if kubeconfig is not None:
        command += ["--kubeconfig", str(kubeconfig)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def render(*values: str, **sets: str) -> list[dict[str, Any]]:
    args = ["template", "dais", str(CHART), "--namespace", "dais-system"]
    for path in values:
        args += ["-f", path]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    return [doc for doc in yaml.safe_load_all(helm(*args).stdout) if doc]


@pytest.mark.parametrize("values", [*CI_VALUES, None], ids=[p.name for p in CI_VALUES] + ["no-values"])
def test_lint(values: Path | None) -> None:
    args = ["lint", str(CHART), "--strict"]
    if values is not None:
        args += ["-f", str(values)]
    helm(*args)


@pytest.mark.parametrize("values", CI_VALUES, ids=[p.name for p in CI_VALUES])
def test_every_rendered_object_is_valid_kubernetes(values: Path) -> None:
    objects = render(str(values))
    assert {o["kind"] for o in objects} >= {"Deployment", "Service", "ServiceAccount", "Role", "ConfigMap"}
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            assert obj["apiVersion"].split("/")[0] in ("monitoring.coreos.com", "gateway.networking.k8s.io")
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_every_container_runs_unprivileged_with_probes_and_resources() -> None:
    for obj in render(str(CHART / "ci" / "default-values.yaml")):
        if obj["kind"] not in ("Deployment", "Job", "Pod"):
            continue
        spec = obj["spec"]["template"]["spec"] if obj["kind"] != "Pod" else obj["spec"]
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert container["resources"]["limits"]["memory"]
            if obj["kind"] == "Deployment":
                assert {"livenessProbe", "readinessProbe", "startupProbe"} <= set(container)


def test_every_value_is_documented() -> None:
    """Each leaf value has a `# --` comment above it, or sits in a mapping that has one (resources, ...)."""
    undocumented = []
    documented_parents: list[tuple[int, bool]] = []  # (indent, has a `# --` comment) of enclosing keys
    previous = ""
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        key = re.match(r"^(\s*)([\w.-]+):(.*)$", line)
        if key and not stripped.startswith("#"):
            indent, name, rest = len(key.group(1)), key.group(2), key.group(3).strip()
            while documented_parents and documented_parents[-1][0] >= indent:
                documented_parents.pop()
            documented = previous.startswith("# --")
            if rest and not documented and not any(d for _, d in documented_parents):
                undocumented.append(name)
            if not rest:
                documented_parents.append((indent, documented))
        if stripped and not stripped.startswith("- "):
            previous = stripped
    assert not undocumented


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({}, "database.url (a PostgreSQL URL) or database.existingSecret is required"),
        ({"database.url": "postgresql://x", "api.replicas": "-1"}, "/api/replicas"),
        ({"database.url": "postgresql://x", "gateway.service.port": "70000"}, "/gateway/service/port"),
        ({"database.url": "postgresql://x", "config.endpointsNamespace": "Not_Valid"}, "/config/endpointsNamespace"),
        ({"database.url": "postgresql://x", "api.replica": "2"}, "replica"),  # a typo: unknown keys are refused
        ({"database.url": "postgresql://x", "api.drainSeconds": "-1"}, "/api/drainSeconds"),
        ({"database.url": "postgresql://x", "global.preStopSeconds": "soon"}, "/global/preStopSeconds"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(sets: dict[str, str], message: str) -> None:
    args = ["template", "dais", str(CHART)]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    result = helm(*args, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def _deployments(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["name"].removeprefix("dais-"): o["spec"]["template"]["spec"]
        for o in objects
        if o["kind"] == "Deployment"
    }


@pytest.mark.parametrize(
    ("sets", "pre_stop", "api_drain", "gateway_drain"),
    [
        ({}, 5, 30, 30),
        ({"global.preStopSeconds": "8", "api.drainSeconds": "60", "gateway.drainSeconds": "120"}, 8, 60, 120),
        ({"global.preStopSeconds": "0"}, 0, 30, 30),
    ],
)
def test_the_api_and_the_gateway_drain_within_their_grace_period(
    sets: dict[str, str], pre_stop: int, api_drain: int, gateway_drain: int
) -> None:
    """Each waits in preStop while Services stop sending it connections, then drains for the seconds its
    process is told (the ConfigMap); Kubernetes kills it only after both and a margin."""
    objects = render(str(CHART / "ci" / "default-values.yaml"), **sets)
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "dais-config")
    assert config["data"]["DAIS_API__DRAIN_SECONDS"] == str(api_drain)
    assert config["data"]["DAIS_GATEWAY__DRAIN_SECONDS"] == str(gateway_drain)
    pods = _deployments(objects)
    for component, drain in (("api", api_drain), ("gateway", gateway_drain)):
        assert pods[component]["terminationGracePeriodSeconds"] == pre_stop + drain + 10
        lifecycle = pods[component]["containers"][0].get("lifecycle")
        assert lifecycle == ({"preStop": {"sleep": {"seconds": pre_stop}}} if pre_stop else None)
        # Readiness is the route that turns 503 as the drain begins (liveness stays /healthz).
        assert pods[component]["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert pods[component]["containers"][0]["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for component in ("controller", "autoscaler"):  # no traffic to drain: Kubernetes's default
        assert pods[component]["terminationGracePeriodSeconds"] == 30
        assert "lifecycle" not in pods[component]["containers"][0]


def test_existing_secrets_render_no_secret_and_are_referenced() -> None:
    objects = render(str(CHART / "ci" / "existing-secrets-values.yaml"))
    assert not [o for o in objects if o["kind"] == "Secret"]
    api = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-api"))
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in api["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DAIS_DATABASE_URL"] == {"name": "dais-db", "key": "url"}
    assert env["DAIS_SECRET_KEY"] == {"name": "dais-keys", "key": "secret-key"}


# -- a real install ----------------------------------------------------------------------------------------


class Release:
    def __init__(self, cluster: KubeCluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.endpoints_namespace = f"{namespace}-endpoints"

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return helm(*args, "--namespace", self.namespace, kubeconfig=self.cluster.kubeconfig)

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(assets_dir() / "kubectl"), "--kubeconfig", str(self.cluster.kubeconfig), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        out = self.kubectl("get", kind, name, "-n", namespace or self.namespace, "-o", "yaml").stdout
        found: dict[str, Any] = yaml.safe_load(out)
        return found

    def can(self, component: str, verb: str, resource: str, namespace: str) -> bool:
        """``resource`` may name a subresource (``pods/log``): can-i reads ``pods/log`` as the pod named log."""
        account = f"system:serviceaccount:{self.namespace}:dais-{component}"
        kind, _, sub = resource.partition("/")
        asked = [kind, f"--subresource={sub}"] if sub else [kind]
        result = self.kubectl("auth", "can-i", verb, *asked, "-n", namespace, "--as", account, check=False)
        return result.stdout.strip() == "yes"


@pytest.fixture(scope="module")
def release(kube_cluster: KubeCluster) -> Iterator[Release]:
    installed = Release(kube_cluster, f"dais-{uuid.uuid4().hex[:6]}")
    installed.helm(
        "install",
        "dais",
        str(CHART),
        "--create-namespace",
        "-f",
        str(CHART / "ci" / "default-values.yaml"),
        "--set",
        f"config.endpointsNamespace={installed.endpoints_namespace}",
        "--wait",
        "--timeout",
        "3m",
    )
    yield installed
    installed.helm("uninstall", "dais", "--wait", "--timeout", "2m")


def _available(release: Release, component: str) -> bool:
    status = release.get("deployment", f"dais-{component}").get("status", {})
    return any(c["type"] == "Available" and c["status"] == "True" for c in status.get("conditions", []))


def test_install_makes_every_deployment_available_after_the_migration(release: Release) -> None:
    for component in ("api", "controller", "autoscaler", "gateway"):
        assert _available(release, component), component
    job = release.get("job", "dais-migrations")
    assert job["status"].get("succeeded") == 1
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]
    secret = release.get("secret", "dais")
    assert set(secret["data"]) == {"database-url", "secret-key", "admin-token"}


def test_the_installed_api_and_gateway_wait_in_pre_stop_and_drain(release: Release) -> None:
    """The API server keeps the preStop sleep action (Kubernetes >= 1.30) and the grace periods as rendered."""
    for component in ("api", "gateway"):
        pod = release.get("deployment", f"dais-{component}")["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] == 5 + 30 + 10
        assert pod["containers"][0]["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    config = release.get("configmap", "dais-config")["data"]
    assert (config["DAIS_API__DRAIN_SECONDS"], config["DAIS_GATEWAY__DRAIN_SECONDS"]) == ("30", "30")


def test_upgrade_runs_the_migration_again_and_keeps_generated_secrets(release: Release) -> None:
    before_job = release.get("job", "dais-migrations")["metadata"]["uid"]
    before_secret = release.get("secret", "dais")["data"]
    release.helm(
        "upgrade",
        "dais",
        str(CHART),
        "-f",
        str(CHART / "ci" / "default-values.yaml"),
        "--set",
        f"config.endpointsNamespace={release.endpoints_namespace}",
        "--set",
        "config.logLevel=DEBUG",
        "--wait",
        "--timeout",
        "3m",
    )
    job = release.get("job", "dais-migrations")
    assert job["metadata"]["uid"] != before_job
    assert job["status"].get("succeeded") == 1
    assert release.get("configmap", "dais-config")["data"]["DAIS_LOG_LEVEL"] == "DEBUG"
    assert release.get("secret", "dais")["data"] == before_secret  # the secret key and admin token survive
    wait_for(lambda: _available(release, "api"), timeout=120, what="the api to roll out")


@pytest.mark.parametrize(
    ("component", "verb", "resource", "where", "allowed"),
    [
        ("controller", "create", "deployments.apps", "endpoints", True),
        ("controller", "delete", "services", "endpoints", True),
        ("controller", "patch", "secrets", "endpoints", True),
        ("controller", "get", "pods/log", "endpoints", True),
        ("controller", "get", "pods/exec", "endpoints", False),
        ("controller", "update", "leases.coordination.k8s.io", "endpoints", True),
        ("controller", "get", "secrets", "release", False),  # only where it manages endpoints
        ("controller", "create", "deployments.apps", "default", False),
        ("controller", "delete", "pods", "endpoints", False),
        ("controller", "create", "roles.rbac.authorization.k8s.io", "endpoints", False),
        ("autoscaler", "update", "leases.coordination.k8s.io", "endpoints", True),
        ("autoscaler", "list", "pods", "endpoints", True),  # whose hardware use a series is, by label
        ("autoscaler", "get", "secrets", "endpoints", False),
        ("autoscaler", "delete", "pods", "endpoints", False),
        ("autoscaler", "list", "pods", "release", False),
        ("autoscaler", "get", "deployments.apps", "endpoints", False),
        ("gateway", "get", "secrets", "endpoints", False),
        ("gateway", "get", "secrets", "release", False),
        ("gateway", "list", "pods", "endpoints", False),
        ("api", "list", "pods", "endpoints", True),  # the logs route's live lines
        ("api", "get", "pods/log", "endpoints", True),
        ("api", "get", "pods", "endpoints", False),
        ("api", "get", "secrets", "release", False),
        ("api", "get", "secrets", "endpoints", False),
        ("api", "delete", "pods", "endpoints", False),
        ("api", "list", "pods", "release", False),
        ("api", "list", "deployments.apps", "endpoints", False),
    ],
)
def test_each_service_account_can_do_its_job_and_nothing_more(
    release: Release, component: str, verb: str, resource: str, where: str, allowed: bool
) -> None:
    namespace = {"endpoints": release.endpoints_namespace, "release": release.namespace}.get(where, where)
    assert release.can(component, verb, resource, namespace) is allowed


def test_the_controller_may_read_only_its_own_namespace_object(release: Release) -> None:
    account = f"system:serviceaccount:{release.namespace}:dais-controller"
    mine = release.kubectl(
        "auth", "can-i", "get", f"namespace/{release.endpoints_namespace}", "--as", account, check=False
    )
    other = release.kubectl("auth", "can-i", "get", "namespace/kube-system", "--as", account, check=False)
    assert mine.stdout.strip() == "yes"
    assert other.stdout.strip() == "no"


def test_each_service_monitor_selects_exactly_one_service_with_its_port() -> None:
    objects = render(str(CHART / "ci" / "monitoring-values.yaml"))
    services = [o for o in objects if o["kind"] == "Service"]
    monitors = [o for o in objects if o["kind"] == "ServiceMonitor"]
    assert len(monitors) == 4
    for monitor in monitors:
        wanted = monitor["spec"]["selector"]["matchLabels"]
        chosen = [s for s in services if wanted.items() <= s["metadata"]["labels"].items()]
        assert len(chosen) == 1, monitor["metadata"]["name"]
        port = monitor["spec"]["endpoints"][0]["port"]
        assert port in {p["name"] for p in chosen[0]["spec"]["ports"]}


def test_a_gateway_domain_routes_its_wildcard_hosts_through_the_ingress() -> None:
    objects = render(str(CHART / "ci" / "exposed-values.yaml"))
    ingress = next(o for o in objects if o["kind"] == "Ingress" and o["metadata"]["name"].endswith("-gateway"))
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == ["models.example.com", "*.models.example.com"]
    assert ingress["spec"]["tls"][0]["hosts"] == ["models.example.com", "*.models.example.com"]
