"""``/api/v1/catalog`` (and the ≤ 1.33 ``/api/catalog``): the model catalog and deploys from it (reference §7)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from api.endpoint.schemas import EndpointWithStatus
from api.schemas import Out
from core.domain.catalog import CatalogEngine
from core.domain.enums import Accelerator
from core.domain.spec import NAME_PATTERN, RequestBody


class RecipeHardwareRead(Out):
    vendor: str | None = None
    region: str | None = None
    instance_type: str | None = None
    instance_size: str | None = None


class RecipeScalingRead(Out):
    min_replica: int
    max_replica: int
    scale_to_zero_timeout: int | None


class RecipeRead(Out):
    public_id: str = Field(description="Pass it as recipe_id to deploy exactly this recipe.")
    accelerator: Accelerator
    engine_type: CatalogEngine
    gguf_file: str | None = Field(description="The GGUF file served, for llamacpp recipes.")
    revision: str | None = Field(description="The revision the recipe pins; null: the default branch.")
    type: str = Field(description="The endpoint's security level.")
    framework: str = Field(description="model.framework of the endpoint.")
    hardware: RecipeHardwareRead = Field(description="What the recipe pins; the deploy chooses the rest.")
    scaling: RecipeScalingRead
    env: dict[str, str] = Field(description="model.env of the endpoint.")
    options: dict[str, Any] = Field(description="Engine knobs, under model.image.<engine> (with modelPath).")


class CatalogModelRead(Out):
    repo_id: str
    model_name: str
    author_name: str
    license: str
    task: str
    created_at: str = Field(description="When the model joined the catalog, RFC 3339 in UTC.")
    recipes: list[RecipeRead] = Field(description="Its recipes for the filters given; the first is the default.")


class CatalogList(Out):
    items: list[CatalogModelRead]


class RepoList(Out):
    """The ≤ 1.33 listing: repo ids only."""

    models: list[str]


class Deployed(Out):
    endpoint: EndpointWithStatus


Namespace = Annotated[str, Field(min_length=1, max_length=64, description="Where the endpoint is created.")]


class DeployConfig(RequestBody):
    name: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="The endpoint's name (1-32 lowercase letters, digits and '-'); default: the model's name "
        "shortened, with a random suffix.",
    )


class RecipeDeploy(RequestBody):
    """``POST …/recipe/{recipe_id}/deploy``."""

    namespace: Namespace
    config: DeployConfig | None = None


class ModelDeploy(RecipeDeploy):
    """``POST …/model/{repo_id}/deploy``: the model's first recipe for ``accelerator`` and ``ggufFile``."""

    accelerator: Accelerator | None = Field(default=None, description="Only recipes for this accelerator.")
    gguf_file: str | None = Field(default=None, max_length=255, description="Only the recipe serving this file.")


class LegacyDeploy(RequestBody):
    """``POST /api/catalog/deploy`` as huggingface_hub ≤ 1.33 sends it."""

    namespace: Namespace
    repo_id: str = Field(min_length=1, max_length=200)
    endpoint_name: str | None = Field(default=None, pattern=NAME_PATTERN)
    accelerator: Accelerator | None = None
