from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints

from api.schemas import Out
from core.domain.spec import PRINTABLE_ASCII, RequestBody, check_hub_token

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
    token: Annotated[str, StringConstraints(min_length=8, max_length=512), AfterValidator(check_hub_token)] = Field(
        description="A Hugging Face token with read access (hf_…); stored encrypted, never returned.",
        json_schema_extra={"pattern": PRINTABLE_ASCII},
    )


# -- responses --------------------------------------------------------------------------------------------


class OrgRef(Out):
    type: Literal["org"]
    name: str


class AccessToken(Out):
    display_name: str
    role: Literal["write", "fineGrained"] = Field(description="fineGrained: a token scoped to one endpoint.")


class TokenAuth(Out):
    type: Literal["access_token"]
    access_token: AccessToken


class WhoAmI(Out):
    """Shaped as the Hub's whoami-v2: ``huggingface_hub`` reads the default namespace here."""

    type: Literal["user"]
    id: str
    name: str
    fullname: str
    is_admin: bool
    orgs: list[OrgRef]
    auth: TokenAuth


class UserRead(Out):
    id: str
    name: str
    type: Literal["user"]
    is_admin: bool


class OrgRead(Out):
    id: str
    name: str
    type: Literal["org"]
    members: list[str]


class OrgList(Out):
    items: list[OrgRead] = Field(description="The orgs the caller belongs to (an admin: every org), by name.")


class TokenRead(Out):
    id: str
    name: str
    user: str
    prefix: str = Field(description="The first characters, to recognise it; the token itself is never shown again.")
    endpoint_id: str | None
    endpoint: str | None = Field(description="'namespace/name' of the one endpoint it works for, if scoped.")
    created_at: str
    expires_at: str | None
    revoked_at: str | None


class TokenCreated(TokenRead):
    token: str = Field(description="The token: shown in this response only.")


class TokenList(Out):
    items: list[TokenRead]


class TokenRevoked(Out):
    id: str
    revoked_at: str


class HubTokenState(Out):
    namespace: str
    set: bool
    updated_at: str | None
