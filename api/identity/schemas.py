from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from core.domain.spec import RequestBody

NamespaceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9])?$")]


class _Body(RequestBody):
    pass


class UserCreate(_Body):
    name: NamespaceName
    admin: bool = False


class OrgCreate(_Body):
    name: NamespaceName
    members: list[NamespaceName] = Field(default_factory=list)


class TokenCreate(_Body):
    user: NamespaceName | None = Field(default=None, description="Defaults to the caller.")
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)
    endpoint: str | None = Field(
        default=None, pattern=r"^[^/]+/[^/]+$", description="'namespace/name': the token works only there."
    )


class HubTokenSet(_Body):
    token: Annotated[str, StringConstraints(min_length=8, max_length=512, pattern=r"^\S+$")] = Field(
        description="A Hugging Face token with read access (hf_…); stored encrypted, never returned."
    )
