"""Schemathesis, run from its command line as an operator would, makes requests for every operation of the
OpenAPI document from the document itself and sends them to a real ``dais api`` (on a PostgreSQL database of its
own, resolving models on the local Hub) as the admin. No answer may be a 5xx; each answer's status, content type
and body must be ones the document declares for that operation; a request without a token must be refused.

The run is bounded (ten examples an operation, forty for the endpoint's create and update, each phase once) and
deterministic, so a failure reproduces; the output shows each with a curl command. Bodies are checked against a
stricter copy of the document that allows no field beyond the declared ones: the published one leaves room to add
fields, but an answer must not carry a field the document does not know.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from core.domain.catalog import load_model_catalog
from tests.factories import ADMIN_TOKEN, STANDARD_MODELS, endpoint_body
from tests.fixtures.hub import HubServer
from tests.fixtures.outage import DAIS, dais_env
from tests.fixtures.postgres import create_database, free_port
from tests.fixtures.server import running

NS = "admin"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "ignored_auth",
    "unsupported_method",
)


def _environment(database: str, home: Path, hub: HubServer) -> dict[str, str]:
    env = dais_env(
        database,
        home,
        DAIS_HUB__URL=hub.url,
        DAIS_HUB__RETRY_DEADLINE_SECONDS="3",
        DAIS_CONTROLLER__RUNTIME="none",
        HF_HOME=str(home / "hf"),
    )
    return {k: v for k, v in env.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE")}


def _seed(client: httpx.Client) -> dict[str, list[str]]:
    """Things for generated paths to find: an endpoint (and one to delete), a user in an org, a token."""
    for name in ("fuzz", "doomed"):
        assert client.post(f"/v2/endpoint/{NS}", json=endpoint_body(name)).status_code == 200
    assert client.post("/api/users", json={"name": "fuzz-user"}).status_code == 200
    assert client.post("/api/orgs", json={"name": "fuzz-org", "members": ["fuzz-user"]}).status_code == 200
    token = client.post("/api/tokens", json={"name": "fuzz", "user": "fuzz-user"})
    assert token.status_code == 200
    catalog = load_model_catalog(None)  # the API's: no setting names another
    body = endpoint_body("any")
    return {
        "namespaces": [NS, "fuzz-org"],
        "endpoints": ["fuzz"],
        "doomed": ["doomed"],
        "orgs": ["fuzz-org"],
        "users": ["fuzz-user", NS],
        "tokens": [token.json()["id"]],
        "repos": [model.repo_id for model in catalog.models[:3]],
        "recipes": [model.recipes[0].public_id for model in catalog.models[:3]],
        "models": list(STANDARD_MODELS),  # on the local Hub
        "vendors": [body["provider"]["vendor"]],
        "regions": [body["provider"]["region"]],
        "instance_types": [body["compute"]["instanceType"]],
        "instance_sizes": [body["compute"]["instanceSize"]],
    }


def _config(values: dict[str, list[str]]) -> str:
    """schemathesis.toml: generated names hit the seeded things half the time (the namespace and the hardware of a
    create, mostly). The streams stay off: ``watch`` and ``follow`` answer until the client leaves, so the fuzzer
    would wait on them forever (tests/api/test_observability.py and test_drain.py cover them)."""
    lines = []
    for name, entries in values.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(entries)}", ""]
    lines += [
        "[parameters]",
        '"path.namespace" = { dictionary = "namespaces", probability = 0.9 }',
        '"query.namespace" = { dictionary = "namespaces", probability = 0.5 }',
        '"body.namespace" = { dictionary = "namespaces", probability = 0.9 }',
        '"path.name" = { dictionary = "endpoints", probability = 0.5 }',
        '"path.org" = { dictionary = "orgs", probability = 0.5 }',
        '"path.user" = { dictionary = "users", probability = 0.5 }',
        '"path.token_id" = { dictionary = "tokens", probability = 0.5 }',
        '"path.repo_id" = { dictionary = "repos", probability = 0.5 }',
        '"path.recipe_id" = { dictionary = "recipes", probability = 0.5 }',
        '"body.model.repository" = { dictionary = "models", probability = 0.9 }',
        '"body.provider.vendor" = { dictionary = "vendors", probability = 0.9 }',
        '"body.provider.region" = { dictionary = "regions", probability = 0.9 }',
        '"body.compute.instanceType" = { dictionary = "instance_types", probability = 0.9 }',
        '"body.compute.instanceSize" = { dictionary = "instance_sizes", probability = 0.9 }',
        '"query.watch" = false',
        '"query.follow" = false',
        "",
        "[[operations]]",  # the endpoint the others work on stays; this one goes
        'include-name = "DELETE /v2/endpoint/{namespace}/{name}"',
        'parameters = { "path.name" = { dictionary = "doomed", probability = 0.5 } }',
    ]
    for name in ("POST /v2/endpoint/{namespace}", "PUT /v2/endpoint/{namespace}/{name}"):
        lines += ["", "[[operations]]", f'include-name = "{name}"', "generation.max-examples = 40"]  # the richest
    return "\n".join(lines) + "\n"


def _strict(document: dict[str, Any]) -> dict[str, Any]:
    """The document with no property beyond the declared ones in any object a response carries."""
    schemas = document["components"]["schemas"]
    seen: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[1]
                if name not in seen:
                    seen.add(name)
                    visit(schemas[name])
            if "properties" in node:
                node.setdefault("additionalProperties", False)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    for operations in document["paths"].values():
        for operation in operations.values():
            visit(operation["responses"])
    return document


def test_no_operation_answers_5xx_or_off_the_document(pg_server: str, hub_server: HubServer, tmp_path: Path) -> None:
    # A database of its own: what the fuzzer writes stays out of every other test's way.
    database = create_database(pg_server, f"dais_fuzz_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}")
    url, log = f"http://127.0.0.1:{free_port()}", tmp_path / "api.log"
    command = [*DAIS, "api", "--upgrade", "--port", url.rsplit(":", 1)[1]]
    with running(
        command,
        log_path=log,
        health_url=f"{url}/readyz",
        name="dais api",
        env=_environment(database, tmp_path, hub_server),
    ):
        with httpx.Client(base_url=url, headers=AUTH, timeout=30) as client:
            values = _seed(client)
            document = client.get("/openapi.json").json()
        (tmp_path / "schemathesis.toml").write_text(_config(values))
        (tmp_path / "openapi.json").write_text(json.dumps(_strict(document)))
        run = subprocess.run(
            [
                *(sys.executable, "-m", "schemathesis.cli"),
                *("--config-file", "schemathesis.toml", "run", "openapi.json", "--url", url),
                *("--header", f"Authorization: Bearer {ADMIN_TOKEN}"),
                *("--checks", ",".join(CHECKS)),
                *("--phases", "examples,coverage,fuzzing,stateful"),
                *("--max-examples", "10", "--generation-deterministic", "--workers", "1"),
                "--no-color",
            ],
            cwd=tmp_path,  # its cache (.schemathesis/) stays out of the tree
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-2000:] + log.read_text()[-3000:]
        operations = sum(len(methods) for methods in document["paths"].values())
        assert f"Tested: {operations}" in run.stdout, run.stdout
        _still_serves(url)


def _still_serves(url: str) -> None:
    """Whatever the fuzzer stored (hub tokens, orgs, tokens, changed endpoints), the routes that read it later
    answer without a 5xx."""
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as client:
        for namespace in (NS, "fuzz-org"):
            answers = [
                client.post(f"/v2/endpoint/{namespace}", json=endpoint_body("after-fuzz")),
                client.get(f"/v2/endpoint/{namespace}"),
                client.get(f"/v2/endpoint/{namespace}/fuzz"),
                client.put(f"/v2/endpoint/{namespace}/fuzz", json={"model": {"revision": "main"}}),
                client.get(f"/api/namespaces/{namespace}/hub-token"),
                client.get("/v2/recommendation", params={"repository": "org/model", "namespace": namespace}),
                client.get(f"/v2/audit-logs/{namespace}"),
                client.get("/api/tokens"),
                client.get("/api/orgs"),
            ]
            assert [a.text for a in answers if a.status_code >= 500] == []
