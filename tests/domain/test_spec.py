"""Spec rules that need no context, table-driven against dict literals."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from api.validation import validation_error
from core.domain.spec import EndpointSpec, check_revision, merge_spec, spec_diff
from tests.factories import endpoint_body


def with_(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(endpoint_body())
    *parents, leaf = path.split(".")
    node = body
    for part in parents:
        node = node[part]
    node[leaf] = value
    return body


def error_of(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        EndpointSpec.model_validate(body)
    return validation_error(caught.value).message


@pytest.mark.parametrize(
    ("path", "value", "field", "hint"),
    [
        ("name", "My-Endpoint", "name", "lowercase"),
        ("name", "-lead", "name", "lowercase"),
        ("name", "trail-", "name", "lowercase"),
        ("name", "a" * 33, "name", "1-32"),
        ("model.image", {"huggingface": {}, "tgi": {}}, "model.image", "exactly one variant"),
        ("model.image", {}, "model.image", "exactly one variant"),
        ("model.image", {"docker": {"url": "x"}}, "model.image", "unknown image variant 'docker'"),
        ("model.image", {"custom": {"port": 80}}, "model.image", "image.custom.url is required"),
        ("model.image", {"custom": {"url": "x", "port": 0}}, "model.image.custom.port", "1 to 65535"),
        ("model.image", {"custom": {"url": "x", "port": 65536}}, "model.image.custom.port", "1 to 65535"),
        ("model.image", {"tgi": {"healthRoute": "health"}}, "model.image.tgi.healthRoute", "start with '/'"),
        ("model.env", {"1BAD": "x"}, "model.env", "not a valid environment variable name"),
        ("model.secrets", {"has-dash": "x"}, "model.secrets", "not a valid environment variable name"),
        ("model.repository", "a/b/c", "model", "not a Hub model id"),
        ("model.repository", "org/../x", "model", "not a Hub model id"),
        ("model.repository", "org/model@bad rev", "model", "contains ' '"),
        ("model.revision", "../etc", "model", "contains '/'"),
        ("model.revision", "a..b", "model", "not safe"),
        ("model.revision", "refs/pr/1", "model", "contains '/': use only letters, digits, '-', '_' and '.'"),
        ("model.revision", "ma\x00in", "body", "model.revision contains a NUL character"),
        ("model.revision", "ma\x01in", "model", "\\x01"),
        ("model.revision", "v1;rm", "model", "contains ';'"),
        ("compute.scaling", {"minReplica": 3, "maxReplica": 1}, "compute.scaling", "lower minReplica"),
        ("compute.scaling", {"minReplica": -1, "maxReplica": 1}, "compute.scaling.minReplica", "greater than"),
        ("compute.scaling", {"minReplica": 0, "maxReplica": 0}, "compute.scaling", "pause it instead"),
        (
            "compute.scaling",
            {"minReplica": 1, "maxReplica": 2, "scaleToZeroTimeout": 15},
            "compute.scaling",
            "needs minReplica = 0",
        ),
        (
            "compute.scaling",
            {"minReplica": 0, "maxReplica": 2, "measure": {"hardwareUsage": 80, "pendingRequests": 2}},
            "compute.scaling.measure",
            "exactly one",
        ),
        (
            "compute.scaling",
            {"minReplica": 0, "maxReplica": 2, "measure": {}},
            "compute.scaling.measure",
            "exactly one",
        ),
        (
            "compute.scaling",
            {"minReplica": 0, "maxReplica": 2, "measure": {"hardwareUsage": 101}},
            "compute.scaling.measure.hardwareUsage",
            "less than or equal to 100",
        ),
        (
            "compute.scaling",
            {"minReplica": 0, "maxReplica": 2, "measure": {"pendingRequests": 0}},
            "compute.scaling.measure.pendingRequests",
            "greater than 0",
        ),
        ("compute.accelerator", "tpu", "compute.accelerator", "'cpu', 'gpu' or 'neuron'"),
        ("type", "secret", "type", "'public'"),
        ("provider", None, "provider", "valid dictionary"),
        ("model.image", {"custom": {"url": " ghcr.io/x/y:1"}}, "model.image.custom.url", "contains whitespace"),
    ],
)
def test_invalid_specs_name_the_field_and_the_fix(path: str, value: Any, field: str, hint: str) -> None:
    message = error_of(with_(path, value))
    assert f"{field}:" in message
    assert hint in message


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("name", "a"),
        ("name", "a" * 32),
        ("name", "my-ep-2"),
        ("model.repository", "gpt2"),
        ("model.repository", "org/Model.v2_final-1"),
        ("model.revision", "release_2.1-rc"),
        ("model.revision", "v1.0"),
        ("model.revision", "0123456789abcdef0123456789abcdef01234567"),
        ("compute.scaling", {"minReplica": 0, "maxReplica": 4, "scaleToZeroTimeout": 15}),
        ("compute.scaling", {"minReplica": 0, "maxReplica": 4, "measure": {"pendingRequests": None}}),
        ("model.image", {"custom": {"url": "ghcr.io/x/y:1", "port": 8000, "healthRoute": "/ping"}}),
        ("model.image", {"vLLM": {"tensorParallelSize": 2, "maxNumSeqs": 8}}),
        ("type", None),
        ("tags", None),
    ],
)
def test_valid_specs_pass(path: str, value: Any) -> None:
    EndpointSpec.model_validate(with_(path, value))


def test_measure_null_threshold_takes_the_default() -> None:
    spec = EndpointSpec.model_validate(
        with_("compute.scaling", {"minReplica": 0, "maxReplica": 2, "measure": {"hardwareUsage": None}})
    )
    assert spec.compute.scaling.measure is not None
    assert spec.compute.scaling.measure.hardware_usage == 80


def test_latest_means_main() -> None:
    assert check_revision("latest") == "main"
    spec = EndpointSpec.model_validate(with_("model.repository", "org/m@latest"))
    assert (spec.model.repository, spec.model.revision) == ("org/m", "main")


def test_pinned_repository_conflicting_with_revision_is_refused() -> None:
    body = with_("model.repository", "org/m@v1")
    body["model"]["revision"] = "v2"
    assert "give only one" in error_of(body)


def test_unknown_variant_knobs_are_kept() -> None:
    spec = EndpointSpec.model_validate(with_("model.image", {"vLLM": {"maxNumSeqs": 8}}))
    assert spec.to_stored()["model"]["image"] == {"vLLM": {"maxNumSeqs": 8}}


def test_stored_spec_holds_no_secret_values() -> None:
    body = with_("model.secrets", {"TOKEN": "value"})
    body["model"]["image"] = {"custom": {"url": "x", "credentials": {"username": "u", "password": "pw"}}}
    spec = EndpointSpec.model_validate(body)
    stored = spec.to_stored()
    assert "value" not in str(stored)
    assert "'pw'" not in str(stored)
    assert spec.secret_material() == {"secrets": {"TOKEN": "value"}, "registryPassword": "pw"}


@pytest.mark.parametrize(
    ("stored", "patch", "merged"),
    [
        ({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}, {"a": {"b": 3, "c": 2}}),
        ({"a": 1}, {}, {"a": 1}),
        (
            {"model": {"image": {"tgi": {"port": 80}}}},
            {"model": {"image": {"vLLM": {}}}},
            {"model": {"image": {"vLLM": {}}}},
        ),
        ({"model": {"env": {"A": "1"}}}, {"model": {"env": {}}}, {"model": {"env": {}}}),
        ({"tags": ["a"]}, {"tags": ["b"]}, {"tags": ["b"]}),
        ({"s": {"scaleToZeroTimeout": 15}}, {"s": {"scaleToZeroTimeout": None}}, {"s": {"scaleToZeroTimeout": None}}),
        (
            {"compute": {"scaling": {"measure": {"hardwareUsage": 80}}}},
            {"compute": {"scaling": {"measure": {"pendingRequests": 2}}}},
            {"compute": {"scaling": {"measure": {"pendingRequests": 2}}}},
        ),
    ],
)
def test_merge(stored: dict[str, Any], patch: dict[str, Any], merged: dict[str, Any]) -> None:
    before = copy.deepcopy(stored)
    assert merge_spec(stored, patch) == merged
    assert stored == before


def test_diff_redacts_secrets() -> None:
    diff = spec_diff(
        {"model": {"secrets": {"A": "x"}, "env": {}}}, {"model": {"secrets": {"A": "y"}, "env": {"E": "1"}}}
    )
    assert diff == [
        {"path": "model.env.E", "old": None, "new": "1"},
        {"path": "model.secrets", "old": {"A": "**redacted**"}, "new": {"A": "**redacted**"}},
    ]
