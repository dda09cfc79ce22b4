"""Deploys from the model catalog. Services never commit: the request boundary does (api/deps.py).

A deploy turns a recipe into a full create body (``EndpointSpec``) and hands it to the endpoint service's
``create``, so validation, the Hub lookup, quota and the audit log are exactly those of
``POST /v2/endpoint/{namespace}``. What the recipe leaves to the deploy:

* the hardware: the cheapest row of the recipe's accelerator (within what its ``hardware`` pins) that holds
  the model's weights plus headroom, as ``GET /v2/recommendation`` ranks them; a recipe naming both
  ``instanceType`` and ``instanceSize`` gets that row, the first in catalog order;
* the name: ``config.name`` when given, else the model's name lowercased, each run of other characters made a
  ``-``, cut at a ``-`` to at most 25 characters, and a random 6-character suffix
  (``Qwen/Qwen2.5-0.5B-Instruct-GGUF`` → ``qwen2-5-0-5b-instruct-k3x9q2``), so deploying one model twice
  makes two endpoints.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from collections.abc import Callable
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.audit.repository import AuditContext
from api.endpoint import service as endpoints
from api.endpoint.hub_calls import Answers
from api.errors import BadRequest, NotFound
from api.validation import validation_error
from core.db.crypto import SecretBox
from core.db.models import Endpoint
from core.domain.catalog import CatalogEngine, CatalogModel, CatalogRecipe, HardwareCatalog, HardwareRow, ModelCatalog
from core.domain.enums import Accelerator
from core.domain.fit import capacity_bytes, estimate_weights, fits, needed_bytes, pick_gguf
from core.domain.spec import EndpointSpec
from hub.client import HubError, ModelFacts
from hub.resolver import HubResolver

SUFFIX_LENGTH = 6
_UNUSABLE = ("deprecated", "not_available")


def find_model(catalog: ModelCatalog, repo_id: str) -> CatalogModel:
    model = catalog.model(repo_id)
    if model is None:
        hint = repo_id.rpartition("/")[2] or repo_id
        raise NotFound(
            f"model {repo_id} is not in this catalog: find the catalog's models with "
            f"GET /api/v1/catalog/list?search={hint} (or ask an admin to add it to DAIS_MODEL_CATALOG)"
        )
    return model


def find_recipe(catalog: ModelCatalog, recipe_id: str) -> tuple[CatalogModel, CatalogRecipe]:
    found = catalog.recipe(recipe_id)
    if found is None:
        raise NotFound(
            f"recipe {recipe_id} is not in this catalog: each model's recipes and their publicId are listed by "
            "GET /api/v1/catalog/list"
        )
    return found


def pick_recipe(
    model: CatalogModel, *, accelerator: Accelerator | None, gguf_file: str | None, hardware: HardwareCatalog
) -> CatalogRecipe:
    """The model's first recipe for ``accelerator`` and ``gguf_file``. With no accelerator asked, the first
    recipe this installation has hardware for (a CPU-only machine skips GPU recipes), else the first."""
    recipes = [
        r
        for r in model.recipes
        if (accelerator is None or r.accelerator is accelerator) and (gguf_file is None or r.gguf_file == gguf_file)
    ]
    if not recipes:
        offered = "; ".join(_describe(r) for r in model.recipes)
        no_accelerator = accelerator is not None and all(r.accelerator is not accelerator for r in model.recipes)
        field = "accelerator" if no_accelerator else "ggufFile"
        asked = " and ".join(
            f"{name} {value}"
            for name, value in (("accelerator", accelerator and accelerator.value), ("ggufFile", gguf_file))
            if value
        )
        raise BadRequest(
            f"{field}: {model.repo_id} has no recipe for {asked}: choose among its recipes ({offered}), or leave "
            f"{field} out",
            fields=[{"field": field, "message": "no such recipe"}],
        )
    if accelerator is None:
        present = {c.accelerator for c in hardware.computes if c.status not in _UNUSABLE}
        return next((r for r in recipes if r.accelerator in present), recipes[0])
    return recipes[0]


def _describe(recipe: CatalogRecipe) -> str:
    file = f", ggufFile {recipe.gguf_file}" if recipe.gguf_file else ""
    return f"{recipe.public_id}: {recipe.accelerator.value}, {recipe.engine_type.value}{file}"


def default_name(repo_id: str, suffix: str) -> str:
    """The model's name as an endpoint name: lowercase, ``-`` for each run of other characters, cut at a ``-``
    to fit 32 characters with ``-{suffix}``."""
    slug = re.sub(r"[^a-z0-9]+", "-", repo_id.rpartition("/")[2].lower()).strip("-")
    room = 31 - len(suffix)
    if len(slug) > room:
        cut = slug[: room + 1]
        slug = cut[: cut.rindex("-")] if "-" in cut else slug[:room]
    return f"{slug or 'endpoint'}-{suffix}"


def random_suffix() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(SUFFIX_LENGTH))


def recipe_framework(recipe: CatalogRecipe) -> str:
    """``model.framework`` of the recipe's endpoint: its own, else llamacpp for llamacpp and pytorch otherwise."""
    return recipe.framework or ("llamacpp" if recipe.engine_type is CatalogEngine.LLAMACPP else "pytorch")


def endpoint_spec(model: CatalogModel, recipe: CatalogRecipe, *, name: str, compute: HardwareRow) -> EndpointSpec:
    """The create body the recipe stands for, on ``compute``."""
    framework = recipe_framework(recipe)
    body = {
        "name": name,
        "type": recipe.type.value,
        "provider": {"vendor": compute.vendor, "region": compute.region},
        "compute": {
            "accelerator": compute.accelerator.value,
            "instanceType": compute.instance_type,
            "instanceSize": compute.instance_size,
            "scaling": recipe.scaling.model_dump(by_alias=True),
        },
        "model": {
            "repository": model.repo_id,
            "revision": recipe.revision,
            "task": model.task,
            "framework": framework,
            "image": recipe.image(),
            "env": dict(recipe.env),
        },
    }
    try:
        return EndpointSpec.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None


def choose_hardware(
    session: Session,
    *,
    model: CatalogModel,
    recipe: CatalogRecipe,
    namespace: str,
    hardware: HardwareCatalog,
    hub: HubResolver,
    box: SecretBox,
    answers: Answers,
) -> HardwareRow:
    """The row the recipe pins, else the cheapest of its accelerator that holds the model."""
    pins = recipe.hardware
    rows = [c for c in hardware.computes if c.accelerator is recipe.accelerator and pins.admits(c)]
    if pins.pinned and rows:
        return rows[0]  # create refuses it, with the reason, if it is deprecated or too small
    usable = [c for c in rows if c.status not in _UNUSABLE]
    if not usable:
        wanted = "/".join(
            v for v in (pins.vendor, pins.region, pins.instance_type, pins.instance_size) if v is not None
        )
        raise BadRequest(
            f"recipe {recipe.public_id}: this installation has no {recipe.accelerator.value} hardware"
            f"{' matching ' + wanted if wanted else ''} (GET /v2/provider/{namespace}): deploy another recipe "
            "(list them with GET /api/v1/catalog/list) or ask an admin to change the recipe",
            fields=[{"field": "accelerator", "message": f"no {recipe.accelerator.value} hardware"}],
        )
    needed = _needed_bytes(session, model=model, recipe=recipe, namespace=namespace, hub=hub, box=box, answers=answers)
    if needed is not None:
        # None fits: the largest row, which create then refuses naming the rows that would hold the model.
        usable = [c for c in usable if fits(c, needed)] or [max(usable, key=capacity_bytes)]
    return min(usable, key=lambda c: (c.price_per_hour, c.num_accelerators, c.id))


def _needed_bytes(
    session: Session,
    *,
    model: CatalogModel,
    recipe: CatalogRecipe,
    namespace: str,
    hub: HubResolver,
    box: SecretBox,
    answers: Answers,
) -> int | None:
    """Weights plus headroom, as the Hub sizes them; None when it cannot say (create then reports why). The Hub
    is asked outside the transaction (``hub_calls``)."""
    token = endpoints.hub_token(session, namespace=namespace, box=box)
    key = ("size", model.repo_id, recipe.revision, hashlib.sha256(token.encode()).hexdigest() if token else None)
    facts = answers.get(key, lambda: _facts(hub, model.repo_id, recipe.revision, token))
    if facts is None:
        return None
    gguf = recipe.gguf_file
    if gguf is None and recipe.engine_type is CatalogEngine.LLAMACPP:
        gguf = pick_gguf(list(facts.files))
    weights = estimate_weights(safetensors_parameters=facts.safetensors_parameters, files=facts.files, gguf_file=gguf)
    return needed_bytes(weights, hub.headroom) if weights is not None else None


def _facts(hub: HubResolver, repo_id: str, revision: str | None, token: str | None) -> ModelFacts | None:
    try:
        return hub.client.model(repo_id, revision, token)
    except HubError:
        return None


def deploy(
    session: Session,
    *,
    namespace: str,
    model: CatalogModel,
    recipe: CatalogRecipe,
    name: str | None,
    catalogs: endpoints.Catalogs,
    box: SecretBox,
    hub: HubResolver,
    answers: Answers,
    ctx: AuditContext,
    now: datetime,
    suffix: Callable[[], str] = random_suffix,
) -> Endpoint:
    """Creates the recipe's endpoint through ``endpoints.create``; its answers (400, 404, 409, 503) are this
    call's. Run it through ``hub_calls.with_hub``, which asks the Hub outside the transaction."""
    compute = choose_hardware(
        session,
        model=model,
        recipe=recipe,
        namespace=namespace,
        hardware=catalogs.hardware,
        hub=hub,
        box=box,
        answers=answers,
    )
    spec = endpoint_spec(model, recipe, name=name or default_name(model.repo_id, suffix()), compute=compute)
    return endpoints.create(
        session,
        namespace=namespace,
        spec=spec,
        catalogs=catalogs,
        box=box,
        hub=hub,
        answers=answers,
        ctx=ctx,
        now=now,
    )
