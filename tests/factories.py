"""Plain factory functions for test data."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from api.identity import repository
from api.identity.service import issue_token
from core.db.models import Account
from tests.fixtures.hub import HubServer, safetensors_bytes

ADMIN_TOKEN = "dais_test_admin_token_0123456789abcdef"


class Ticks:
    """A monotonic clock the test moves by hand (``ticks.now += 5``)."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def make_user(session: Session, name: str, *, now: datetime, admin: bool = False) -> str:
    """Creates a user and returns a fresh token for it."""
    user = Account(id=uuid.uuid4().hex, name=name, kind="user", is_admin=admin, created_at=now)
    session.add(user)
    session.flush()
    _, token = issue_token(session, user=user, name="test", expires_at=None, endpoint_id=None, now=now)
    return token


def make_org(session: Session, name: str, *, members: list[str], now: datetime) -> None:
    org = Account(id=uuid.uuid4().hex, name=name, kind="org", is_admin=False, created_at=now)
    session.add(org)
    session.flush()
    for member in members:
        user = repository.by_name(session, member)
        assert user is not None
        repository.add_member(session, org_id=org.id, user_id=user.id)


def endpoint_body(name: str = "my-ep", **overrides: Any) -> dict[str, Any]:
    """A create body as huggingface_hub 2.4 sends it (reference §7.1)."""
    body: dict[str, Any] = {
        "compute": {
            "accelerator": "gpu",
            "instanceSize": "x1",
            "instanceType": "nvidia-l4",
            "scaling": {"maxReplica": 1, "minReplica": 1, "scaleToZeroTimeout": None},
        },
        "model": {
            "framework": "pytorch",
            "repository": "openai-community/gpt2",
            "revision": None,
            "image": {"huggingface": {}},
            "task": "text-generation",
        },
        "name": name,
        "provider": {"region": "us-east-1", "vendor": "aws"},
        "type": "authenticated",
    }
    for key, value in overrides.items():
        body[key] = value
    return body


def local_endpoint_body(name: str, repository: str) -> dict[str, Any]:
    """A create body for this machine's CPU row (the local runtime): one replica of ``repository`` on llama.cpp."""
    return endpoint_body(
        name,
        type="protected",
        provider={"vendor": "local", "region": "local"},
        compute={
            "accelerator": "cpu",
            "instanceType": "cpu",
            "instanceSize": "x1",
            "scaling": {"minReplica": 1, "maxReplica": 1},
        },
        model={"repository": repository, "framework": "pytorch", "task": "text-generation", "image": {"llamacpp": {}}},
    )


# Models every API test may name (the local Hub serves them; tests/fixtures/hub.py). Small: about 1M parameters.
STANDARD_MODELS = {
    "openai-community/gpt2": "text-generation",
    "org/model": "text-generation",
    "org/embedder": "feature-extraction",
}


def add_standard_models(hub: HubServer) -> None:
    for repo_id, task in STANDARD_MODELS.items():
        hub.add_model(
            repo_id,
            {
                "config.json": b'{"model_type": "gpt2"}',
                "model.safetensors": safetensors_bytes({"w": ("F32", [1024, 1024])}),
            },
            pipeline_tag=task,
        )
