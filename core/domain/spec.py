"""The endpoint spec in the Inference Endpoints v2 shape, and every rule that needs no context.

``EndpointSpec`` is the full, validated spec as stored (camelCase keys via ``to_stored()``).
``EndpointUpdate`` describes what a PUT may carry; the PUT body is deep-merged into the stored spec
(``merge_spec``) and the result validated as a whole, so create and update share one set of rules.
Rules needing context (the hardware row, quota, the replica ceiling) live in the endpoint service.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from core.domain.enums import Accelerator, EndpointType, ImageVariant

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
REPO_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
REVISION_CHARS = re.compile(r"[A-Za-z0-9._-]")
REDACTED = "**redacted**"
DEFAULT_HARDWARE_USAGE = 80.0
DEFAULT_PENDING_REQUESTS = 1.5


class _Shape(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def find_nul(value: Any, path: str = "") -> str | None:
    """The path of the first string (key or value) holding a NUL character, which no database text can store."""
    if isinstance(value, str):
        return (path or "body") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return where
            found = find_nul(item, where)
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = find_nul(item, f"{path}[{index}]")
            if found:
                return found
    return None


class RequestBody(_Shape):
    """A top-level body: refuses NUL characters anywhere, naming the field."""

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        where = find_nul(data)
        if where:
            raise ValueError(f"{where} contains a NUL character (\\u0000): remove it")
        return data


def check_revision(revision: str) -> str:
    """Safe revisions only: letters, digits, ``-``, ``_`` and ``.`` (so a branch, a tag or a 40-hex commit sha).

    A revision ends up in URLs and in the model-fetch container's arguments: no ``/``, no ``..``.
    """
    if not revision:
        raise ValueError("revision is empty: give a branch, tag or commit sha, or leave it out for main")
    for char in revision:
        if not REVISION_CHARS.fullmatch(char):
            shown = repr(char) if char.isprintable() else f"\\x{ord(char):02x}"
            raise ValueError(f"revision {revision!r} contains {shown}: use only letters, digits, '-', '_' and '.'")
    if ".." in revision or len(revision) > 256:
        raise ValueError(f"revision {revision!r} is not safe: no '..', at most 256 characters")
    return "main" if revision == "latest" else revision


def check_repository(repository: str) -> str:
    parts = repository.split("/")
    if len(parts) > 2 or not all(REPO_PART.fullmatch(p) and ".." not in p and "--" not in p for p in parts):
        raise ValueError(
            f"repository {repository!r} is not a Hub model id: use 'org/model' or 'org/model@revision' "
            "(letters, digits, '-', '_', '.')"
        )
    return repository


def _check_env_names(mapping: dict[str, str]) -> dict[str, str]:
    for key in mapping:
        if not ENV_NAME.fullmatch(key):
            raise ValueError(
                f"{key!r} is not a valid environment variable name: use letters, digits and '_', "
                "not starting with a digit"
            )
    return mapping


EnvMap = Annotated[dict[str, str], AfterValidator(_check_env_names)]
Port = Annotated[int, Field(ge=1, le=65535)]
Route = Annotated[str, StringConstraints(pattern=r"^/[\x21-\x7e]*$", max_length=256)]
PRINTABLE_ASCII = r"^[!-~]+$"


def check_hub_token(token: str) -> str:
    """A Hub token travels in an HTTP header, which holds printable ASCII only."""
    if not re.fullmatch(PRINTABLE_ASCII, token):
        raise ValueError("a Hugging Face token is printable ASCII with no spaces (hf_…): copy it again from the Hub")
    return token


def _check_secrets(secrets: dict[str, str]) -> dict[str, str]:
    if secrets.get("HF_TOKEN"):  # the endpoint's own Hub token
        try:
            check_hub_token(secrets["HF_TOKEN"])
        except ValueError as exc:
            raise ValueError(f"HF_TOKEN: {exc}") from None
    return secrets


class Provider(_Shape):
    vendor: str = Field(min_length=1, max_length=64)
    region: str = Field(min_length=1, max_length=64)


class Measure(_Shape):
    hardware_usage: float | None = Field(default=None, ge=1, le=100)
    pending_requests: float | None = Field(default=None, gt=0)

    @model_validator(mode="wrap")
    @classmethod
    def _exactly_one(cls, data: Any, handler: Any) -> Any:
        if isinstance(data, dict):
            known = [k for k in ("hardwareUsage", "pendingRequests", "hardware_usage", "pending_requests") if k in data]
            if len(known) != 1:
                raise ValueError(
                    "measure needs exactly one of hardwareUsage (percent, 1-100) or pendingRequests (> 0), "
                    f"got {sorted(data) or 'neither'}"
                )
            if data[known[0]] is None:  # the client sends a null threshold: use the default
                default = DEFAULT_HARDWARE_USAGE if known[0].startswith("hardware") else DEFAULT_PENDING_REQUESTS
                data = {known[0]: default}
        return handler(data)


class Scaling(_Shape):
    min_replica: int = Field(default=1, ge=0)
    max_replica: int = Field(default=1, ge=0)
    scale_to_zero_timeout: int | None = Field(default=None, ge=1, description="Minutes idle before 0.")
    measure: Measure | None = None
    metric: str | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.min_replica > self.max_replica:
            raise ValueError(
                f"minReplica ({self.min_replica}) is above maxReplica ({self.max_replica}): "
                "lower minReplica or raise maxReplica"
            )
        if self.max_replica < 1:
            raise ValueError("maxReplica must be at least 1; to stop an endpoint, pause it instead")
        if self.scale_to_zero_timeout is not None and self.min_replica != 0:
            raise ValueError(
                f"scaleToZeroTimeout needs minReplica = 0 (got {self.min_replica}): "
                "set minReplica to 0 or scaleToZeroTimeout to null"
            )
        return self


class Compute(_Shape):
    accelerator: Accelerator
    instance_type: str = Field(min_length=1, max_length=64)
    instance_size: str = Field(min_length=1, max_length=16)
    scaling: Scaling = Field(default_factory=Scaling)


class Credentials(_Shape):
    username: str = Field(min_length=1)
    password: str | None = None


def _check_image_reference(url: str) -> str:
    if any(char.isspace() for char in url):
        raise ValueError(f"{url!r} contains whitespace: give an image reference such as 'ghcr.io/org/app:1.0'")
    return url


class ImageVariantConfig(BaseModel):
    """One variant of ``model.image``; engine knobs beyond the common fields pass through unchanged."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    url: Annotated[str, AfterValidator(_check_image_reference)] | None = Field(
        default=None, min_length=1, max_length=512
    )
    health_route: Route | None = Field(default=None, alias="healthRoute")
    port: Port | None = None
    credentials: Credentials | None = None
    tensor_parallel_size: int | None = Field(default=None, ge=1, le=64, alias="tensorParallelSize")
    data_parallel_size: int | None = Field(default=None, ge=1, le=64, alias="dataParallelSize")


def _check_image(image: dict[str, ImageVariantConfig]) -> dict[str, ImageVariantConfig]:
    if len(image) != 1:
        raise ValueError(
            f'image needs exactly one variant, got {sorted(image) or "none"}: e.g. {{"huggingface": {{}}}} '
            f'or {{"custom": {{"url": "..."}}}}'
        )
    ((variant, config),) = image.items()
    try:
        kind = ImageVariant(variant)
    except ValueError:
        known = ", ".join(v.value for v in ImageVariant)
        raise ValueError(f"unknown image variant {variant!r}: use one of {known}") from None
    if kind.needs_url and not config.url:
        raise ValueError(f"image.{variant}.url is required: give the container image, e.g. 'ghcr.io/org/app:1.0'")
    return image


class Model(_Shape):
    repository: str = Field(min_length=1, max_length=300)
    revision: str | None = None
    task: str | None = Field(default=None, max_length=64)
    framework: str = Field(default="pytorch", max_length=32)
    image: Annotated[dict[str, ImageVariantConfig], AfterValidator(_check_image)] = Field(
        default_factory=lambda: {"huggingface": ImageVariantConfig()}
    )
    env: EnvMap = Field(default_factory=dict)
    secrets: Annotated[EnvMap, AfterValidator(_check_secrets)] = Field(default_factory=dict)
    command: list[str] | None = None
    args: list[str] | None = None

    @model_validator(mode="after")
    def _split_repository(self) -> Self:
        repository, _, pinned = self.repository.partition("@")
        check_repository(repository)
        if pinned:
            pinned = check_revision(pinned)
            if self.revision not in (None, pinned, "latest" if pinned == "main" else None):
                raise ValueError(
                    f"repository pins revision {pinned!r} but revision is {self.revision!r}: give only one"
                )
            self.revision = pinned
        elif self.revision is not None:
            self.revision = check_revision(self.revision)
        self.repository = repository
        return self

    @property
    def variant(self) -> ImageVariant:
        return ImageVariant(next(iter(self.image)))


class RouteConfig(_Shape):
    domain: str | None = Field(default=None, max_length=253)
    path: Route | None = None


class PrivateService(_Shape):
    account_id: str | None = None
    region: str | None = None
    shared: bool | None = None


class CustomRouter(BaseModel):
    model_config = ConfigDict(extra="allow")

    tag: str | None = None
    env: EnvMap | None = None
    port: Port | None = None


class EndpointSpec(RequestBody):
    name: Annotated[str, StringConstraints(pattern=NAME_PATTERN)] = Field(
        description="Lowercase letters, digits and '-', 1-32 characters, starting and ending alphanumeric."
    )
    type: EndpointType = EndpointType.PRIVATE
    provider: Provider
    compute: Compute
    model: Model
    route: RouteConfig | None = None
    cache_http_responses: bool | None = None
    tags: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=32
    )
    private_service: PrivateService | None = None
    custom_router: CustomRouter | None = None
    experimental_features: dict[str, Any] | None = None

    @field_validator("type", mode="before")
    @classmethod
    def _type_default(cls, value: Any) -> Any:
        return EndpointType.PRIVATE if value is None else value

    @field_validator("tags", mode="before")
    @classmethod
    def _tags_default(cls, value: Any) -> Any:
        return [] if value is None else value

    def to_stored(self) -> dict[str, Any]:
        """The spec as stored and shown: secret values replaced by ``REDACTED`` (kept encrypted apart)."""
        stored = self.model_dump(mode="json", by_alias=True)
        stored["model"]["secrets"] = dict.fromkeys(sorted(stored["model"]["secrets"]), REDACTED)
        for variant in stored["model"]["image"].values():
            _drop_nones(variant)
            creds = variant.get("credentials")
            if creds is not None:
                _drop_nones(creds)
                if "password" in creds:
                    creds["password"] = REDACTED
        return stored

    def secret_material(self) -> dict[str, Any]:
        """What must be encrypted at rest: env secrets and the registry password."""
        material: dict[str, Any] = {"secrets": dict(self.model.secrets)}
        creds = next(iter(self.model.image.values())).credentials
        if creds is not None and creds.password is not None:
            material["registryPassword"] = creds.password
        return material


class EndpointUpdate(RequestBody):
    """A PUT body: any subset of the spec. Objects merge; image, lists and maps replace."""

    type: EndpointType | None = None
    provider: dict[str, Any] | None = None
    compute: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    route: dict[str, Any] | None = None
    cache_http_responses: bool | None = None
    tags: list[str] | None = None
    private_service: dict[str, Any] | None = None
    custom_router: dict[str, Any] | None = None
    experimental_features: dict[str, Any] | None = None


# Keys whose value replaces the stored one wholesale instead of merging (reference §7.2).
REPLACED_KEYS = frozenset({"image", "env", "secrets", "tags", "command", "args", "measure", "customRouter"})


def merge_spec(stored: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``patch`` into ``stored``; returns a new dict and leaves both inputs untouched."""
    merged = dict(stored)
    for key, value in patch.items():
        current = merged.get(key)
        if key not in REPLACED_KEYS and isinstance(value, dict) and isinstance(current, dict):
            merged[key] = merge_spec(current, value)
        else:
            merged[key] = value
    return merged


def spec_diff(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """Leaf-level differences, as ``[{"path", "old", "new"}]``; secret values never appear."""
    changes: list[dict[str, Any]] = []
    for key in sorted(set(before) | set(after), key=str):
        path = f"{prefix}{key}"
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict) and key not in ("secrets",):
            changes.extend(spec_diff(old, new, f"{path}."))
        elif old != new:
            if key in ("secrets", "password", "registryPassword"):
                old, new = _redact(old), _redact(new)
            changes.append({"path": path, "old": old, "new": new})
    return changes


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return dict.fromkeys(sorted(value), REDACTED)
    return None if value is None else REDACTED


def _drop_nones(mapping: dict[str, Any]) -> None:
    for key in [k for k, v in mapping.items() if v is None]:
        del mapping[key]
