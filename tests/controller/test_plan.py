"""Planning, table-driven: desired vs live → the writes, and none when nothing changed."""

from __future__ import annotations

from typing import Any

import pytest

from controller.desired import HASH
from controller.plan import Action, plan


def obj(kind: str, name: str, digest: str) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "annotations": {HASH: digest}}}


SECRET, SERVICE, DEPLOYMENT = obj("Secret", "ep", "s1"), obj("Service", "ep", "v1"), obj("Deployment", "ep", "d1")


@pytest.mark.parametrize(
    ("desired", "live", "expected"),
    [
        pytest.param(
            [SECRET, SERVICE, DEPLOYMENT],
            [],
            [("apply", "Secret", "ep"), ("apply", "Service", "ep"), ("apply", "Deployment", "ep")],
            id="nothing-live-applies-all-in-order",
        ),
        pytest.param([SECRET, SERVICE, DEPLOYMENT], [DEPLOYMENT, SERVICE, SECRET], [], id="unchanged-writes-nothing"),
        pytest.param(
            [SECRET, SERVICE, obj("Deployment", "ep", "d2")],
            [SECRET, SERVICE, DEPLOYMENT],
            [("apply", "Deployment", "ep")],
            id="only-what-changed",
        ),
        pytest.param(
            [SERVICE, DEPLOYMENT],
            [SECRET, SERVICE, DEPLOYMENT, obj("Secret", "ep-registry", "r1")],
            [("delete", "Secret", "ep"), ("delete", "Secret", "ep-registry")],
            id="no-longer-desired-is-deleted",
        ),
        pytest.param(
            [SERVICE],
            [{"kind": "Service", "metadata": {"name": "ep"}}],
            [("apply", "Service", "ep")],
            id="live-without-our-hash-is-taken-over",
        ),
    ],
)
def test_plan(desired: list[dict[str, Any]], live: list[dict[str, Any]], expected: list[tuple[str, str, str]]) -> None:
    actions = plan(desired, live)
    assert [(a.verb, a.kind, a.name) for a in actions] == expected
    assert all(isinstance(a, Action) and (a.obj is not None) == (a.verb == "apply") for a in actions)
