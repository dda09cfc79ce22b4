"""Endpoint use cases. Services never commit: the request boundary does (api/deps.py).

Lost-update safety: every read-modify-write locks the endpoint row first (``SELECT … FOR UPDATE``; on
SQLite every transaction is ``BEGIN IMMEDIATE``), bumps ``generation`` and honours ``If-Match``. Duplicate
names are refused by a partial unique index, not by a pre-check, so concurrent creates cannot both win.
Quota checks lock the namespace's account row, so two creates cannot both squeeze under the quota.
No transaction is open while the Hub is asked (``hub_calls``): a slow Hub holds no lock and no connection.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.audit import repository as audit
from api.audit.repository import AuditContext
from api.endpoint import logs as endpoint_logs
from api.endpoint import repository
from api.endpoint.hub_calls import Answers
from api.endpoint.render import EndpointLike, observed_of, row_facts
from api.errors import BadRequest, Conflict, NotFound, PreconditionFailed, ServiceUnavailable
from api.validation import validation_error
from core.db.crypto import SecretBox
from core.db.models import AuditEvent, Endpoint, EndpointReplica, EndpointScaling, EndpointStatus, ScalingDecision
from core.domain.catalog import EngineCatalog, EngineError, HardwareCatalog, HardwareRow, ModelCatalog
from core.domain.enums import EndpointState, ImageVariant
from core.domain.ids import new_id
from core.domain.spec import REDACTED, EndpointSpec, merge_spec, spec_diff
from core.domain.state import shown_state
from core.kube.client import Kube
from core.log_store import LogStore
from hub.resolve import HubUnavailable, Refused, Resolution
from hub.resolver import HubResolver


@dataclass(frozen=True, slots=True)
class Catalogs:
    hardware: HardwareCatalog
    engines: EngineCatalog
    models: ModelCatalog  # the curated model configurations of /api/v1/catalog
    max_replica_ceiling: int
    containers: bool = True  # False on the local runtime: replicas are processes, no image can run


def get(session: Session, *, namespace: str, name: str) -> Row[Any]:
    found = repository.get_live(session, namespace, name)
    if found is None:
        raise NotFound(f"endpoint {namespace}/{name} not found")
    return found


def list_in(session: Session, *, namespace: str) -> Sequence[Row[Any]]:
    """Every live endpoint of a namespace, as rows ready to render."""
    return repository.list_in(session, namespace)


def list_filtered(
    session: Session,
    *,
    namespace: str,
    search: str | None,
    tags: list[str],
    state: str | None,
    cursor: str | None,
    limit: int | None,
) -> tuple[list[Row[Any]], str | None]:
    """A page of the namespace's endpoints by name, after ``cursor`` (the last name of the previous page):
    those whose name or model contains ``search`` (any case), that carry every tag and are in ``state``; and
    the next page's cursor, None on the last page. A namespace is read whole (as the unfiltered list is), so
    the filters read the shown state, which is not a column."""
    needle = search.lower() if search else None
    wanted = frozenset(tags)
    found = []
    for row in repository.list_in(session, namespace):
        facts = row_facts(row)
        if cursor is not None and facts.name <= cursor:
            continue
        if needle and needle not in facts.name and needle not in facts.repository.lower():
            continue
        if not wanted <= facts.tags or (state is not None and facts.state != state):
            continue
        found.append(row)
        if limit is not None and len(found) > limit:
            return found[:limit], row_facts(found[limit - 1]).name
    return found, None


def replicas(session: Session, *, namespace: str, name: str) -> Sequence[EndpointReplica]:
    """The endpoint's replicas as the controller last observed them: running ones, then recently gone ones."""
    endpoint = get(session, namespace=namespace, name=name)
    return repository.replicas_of(session, endpoint.id)


def hub_token(session: Session, *, namespace: str, box: SecretBox) -> str | None:
    """The namespace's Hub token in clear, if one is set."""
    sealed = repository.hub_token_of(session, namespace)
    return box.open(sealed)["token"] if sealed else None


def create(
    session: Session,
    *,
    namespace: str,
    spec: EndpointSpec,
    catalogs: Catalogs,
    box: SecretBox,
    hub: HubResolver,
    answers: Answers,
    ctx: AuditContext,
    now: datetime,
) -> Endpoint:
    """A new endpoint; run it through ``hub_calls.with_hub``, which asks the Hub outside the transaction."""
    compute = _check_context(spec, catalogs)
    resolution = _resolve(session, spec, compute=compute, namespace=namespace, hub=hub, box=box, answers=answers)
    _check_engine(spec, compute, catalogs, resolution)
    endpoint = Endpoint(
        id=new_id(),
        namespace=namespace,
        name=spec.name,
        spec=_stored(spec, compute, resolution),
        resolution=resolution.to_stored(),
        secrets=_sealed(box, spec.secret_material()),
        generation=1,
        accelerators=_accelerators(compute, spec),
        quota_key=compute.quota_key,
        paused=False,
        scaled_to_zero=False,
        created_at=now,
        created_by=ctx.actor,
        updated_at=now,
        updated_by=ctx.actor,
    )
    try:
        repository.add(session, endpoint)  # the unique index decides; the caller rolls the transaction back
    except IntegrityError:
        raise Conflict(
            f"endpoint {namespace}/{spec.name} already exists: pick another name or update that endpoint"
        ) from None
    _audit_within_quota(
        session,
        ctx=ctx,
        action="endpoint.create",
        now=now,
        endpoint_id=endpoint.id,
        namespace=namespace,
        diff=spec_diff({}, endpoint.spec),
        compute=compute,
        spec=spec,
    )
    return endpoint


def update(
    session: Session,
    *,
    namespace: str,
    name: str,
    patch: dict[str, Any],
    if_match: str | None,
    catalogs: Catalogs,
    box: SecretBox,
    hub: HubResolver,
    answers: Answers,
    ctx: AuditContext,
    now: datetime,
) -> Endpoint:
    """The patch merged into the endpoint as it is now; run it through ``hub_calls.with_hub``. A pause or any
    other change made while the Hub was asked is kept, and the Hub is asked again only when the change touched
    what its answer depends on."""
    endpoint = _locked(session, namespace, name, if_match)
    old_material = _material(endpoint, box)
    current = _with_material(endpoint.spec, old_material)
    patch = _keep_redacted(patch, current)
    merged = merge_spec(current, patch)
    merged["name"] = endpoint.name  # the name is the key; PUT cannot rename
    try:
        spec = EndpointSpec.model_validate(merged)
    except ValidationError as exc:
        raise validation_error(exc) from None
    # Hardware that became deprecated keeps serving what already runs on it; only moving onto it is refused.
    compute = _check_context(spec, catalogs, current=endpoint.spec["compute"]["id"])
    resolution = _resolution_of(endpoint)
    if (
        resolution is None
        or _model_changed(endpoint.spec, merged, patch)
        or _token_changed(material_of=spec, old=old_material)
    ):
        resolution = _resolve(session, spec, compute=compute, namespace=namespace, hub=hub, box=box, answers=answers)
    _check_engine(spec, compute, catalogs, resolution)
    stored = _stored(spec, compute, resolution)
    material = spec.secret_material()
    if stored == endpoint.spec and material == old_material and resolution.to_stored() == endpoint.resolution:
        return endpoint  # nothing changed: no new generation, no audit event
    accelerators = _accelerators(compute, spec)
    grows = accelerators > endpoint.accelerators or compute.quota_key != endpoint.quota_key
    diff = spec_diff(current, _with_material(stored, material))
    endpoint.spec = stored
    endpoint.resolution = resolution.to_stored()
    endpoint.secrets = _sealed(box, material)
    endpoint.accelerators = accelerators
    endpoint.quota_key = compute.quota_key
    _bump(session, endpoint, ctx=ctx, now=now)
    event: dict[str, Any] = {
        "ctx": ctx,
        "action": "endpoint.update",
        "now": now,
        "endpoint_id": endpoint.id,
        "diff": diff,
    }
    if grows and not endpoint.paused:  # paused endpoints do not count; resume checks them
        _audit_within_quota(session, namespace=namespace, compute=compute, spec=spec, **event)
    else:
        audit.record(session, namespace=namespace, **event)
    return endpoint


def delete(session: Session, *, namespace: str, name: str, ctx: AuditContext, now: datetime) -> None:
    endpoint = _locked(session, namespace, name, None)
    endpoint.deleted_at = now
    _bump(session, endpoint, ctx=ctx, now=now)
    audit.record(
        session,
        ctx=ctx,
        action="endpoint.delete",
        now=now,
        endpoint_id=endpoint.id,
        namespace=namespace,
    )


def pause(session: Session, *, namespace: str, name: str, ctx: AuditContext, now: datetime) -> Endpoint:
    endpoint = _locked(session, namespace, name, None)
    if not endpoint.paused:
        endpoint.paused = True
        endpoint.scaled_to_zero = False
        _bump(session, endpoint, ctx=ctx, now=now)
        audit.record(
            session,
            ctx=ctx,
            action="endpoint.pause",
            now=now,
            endpoint_id=endpoint.id,
            namespace=namespace,
            diff=[{"path": "paused", "old": False, "new": True}],
        )
    return endpoint


def resume(
    session: Session, *, namespace: str, name: str, catalogs: Catalogs, ctx: AuditContext, now: datetime
) -> Endpoint:
    endpoint = _locked(session, namespace, name, None)
    if not endpoint.paused and not endpoint.scaled_to_zero:
        state = _shown(endpoint, endpoint.status)
        raise BadRequest(f"endpoint {namespace}/{name} is already running (state {state.value}): nothing to resume")
    was_paused = endpoint.paused
    diff = [
        {"path": path, "old": True, "new": False}
        for path, flag in (("paused", endpoint.paused), ("scaledToZero", endpoint.scaled_to_zero))
        if flag
    ]
    endpoint.paused = False
    endpoint.scaled_to_zero = False
    _bump(session, endpoint, ctx=ctx, now=now)
    event: dict[str, Any] = {
        "ctx": ctx,
        "action": "endpoint.resume",
        "now": now,
        "endpoint_id": endpoint.id,
        "diff": diff,
    }
    if was_paused:  # paused endpoints do not count against quota; resuming makes them count again
        spec = EndpointSpec.model_validate(endpoint.spec)
        compute = _check_context(spec, catalogs, current=endpoint.spec["compute"]["id"])
        _audit_within_quota(session, namespace=namespace, compute=compute, spec=spec, **event)
    else:
        audit.record(session, namespace=namespace, **event)
    return endpoint


def scale_to_zero(session: Session, *, namespace: str, name: str, ctx: AuditContext, now: datetime) -> Endpoint:
    endpoint = _locked(session, namespace, name, None)
    if endpoint.paused:
        raise BadRequest(f"endpoint {namespace}/{name} is paused: resume it first, then scale it to zero")
    if not endpoint.scaled_to_zero:
        endpoint.scaled_to_zero = True
        _bump(session, endpoint, ctx=ctx, now=now)
        audit.record(
            session,
            ctx=ctx,
            action="endpoint.scale_to_zero",
            now=now,
            endpoint_id=endpoint.id,
            namespace=namespace,
            diff=[{"path": "scaledToZero", "old": False, "new": True}],
        )
    return endpoint


def events(session: Session, *, namespace: str, name: str, limit: int, before: int | None) -> list[AuditEvent]:
    endpoint = get(session, namespace=namespace, name=name)
    return audit.events_of(session, endpoint.id, limit=limit, before=before)


def scaling(
    session: Session, *, namespace: str, name: str, limit: int
) -> tuple[Endpoint, EndpointScaling | None, Sequence[ScalingDecision]]:
    """The endpoint, the autoscaler's desired count and its latest decisions, newest first."""
    endpoint = repository.live_entity(session, namespace, name)
    if endpoint is None:
        raise NotFound(f"endpoint {namespace}/{name} not found")
    desired, decisions = repository.scaling_of(session, endpoint.id, limit)
    return endpoint, desired, decisions


@dataclass(frozen=True, slots=True)
class LogSubject:
    """What the database says of an endpoint whose logs are read: read in the request's unit, so that the pods,
    the log store and the files are read after it, with no connection held."""

    endpoint_id: str
    observed: Sequence[EndpointReplica]  # the controller's replicas, running and recently gone
    secrets: tuple[str, ...]  # values to mask


def log_subject(session: Session, *, namespace: str, name: str, box: SecretBox) -> LogSubject:
    endpoint = repository.live_entity(session, namespace, name)
    if endpoint is None:
        raise NotFound(f"endpoint {namespace}/{name} not found")
    secrets = [v for v in (box.open(endpoint.secrets).get("secrets", {}) if endpoint.secrets else {}).values() if v]
    return LogSubject(endpoint.id, repository.replicas_of(session, endpoint.id), tuple(secrets))


def logs(
    subject: LogSubject,
    *,
    home: Path,
    runtime: str,
    kube: Kube | None,
    kube_namespace: str,
    store: LogStore | None,
    query: endpoint_logs.Query,
    clock: Callable[[], datetime],
    retention: timedelta,
) -> endpoint_logs.Logs:
    """The endpoint's replicas (gone ones too) and their lines, the endpoint's secret values masked; with
    ``follow``, what reads the lines written next. Files and network: call it outside any transaction."""
    if runtime == "local":
        oldest = clock() - retention  # what the runtime has not pruned yet is not shown either
        query = replace(query, since=max(query.since or oldest, oldest))
        found = endpoint_logs.local(home, subject.endpoint_id, query)
    elif runtime == "kubernetes" and kube is not None:
        found = endpoint_logs.kubernetes(
            kube, kube_namespace, subject.endpoint_id, subject.observed, store, query, clock=clock
        )
    else:
        return endpoint_logs.Logs([], [], "none: no runtime runs replicas for this API (DAIS_CONTROLLER__RUNTIME)")
    return replace(found, secrets=subject.secrets).with_masked_lines()


def hardware_usage(session: Session, *, namespace: str) -> dict[str, int]:
    return repository.usage_by_compute(session, namespace)


# -- helpers -------------------------------------------------------------------------------------------


def etag(endpoint: EndpointLike) -> str:
    return f'"{endpoint.generation}"'


def _locked(session: Session, namespace: str, name: str, if_match: str | None) -> Endpoint:
    endpoint = repository.lock_live(session, namespace, name)
    if endpoint is None:
        raise NotFound(f"endpoint {namespace}/{name} not found")
    if if_match is not None and if_match.strip() not in ("*", etag(endpoint), f"W/{etag(endpoint)}"):
        raise PreconditionFailed(
            f"endpoint {namespace}/{name} changed since you read it (now generation {endpoint.generation}): "
            "GET it again and retry with the new ETag"
        )
    return endpoint


def _bump(session: Session, endpoint: Endpoint, *, ctx: AuditContext, now: datetime) -> None:
    """A new generation of a changed endpoint, written."""
    endpoint.generation = endpoint.generation + 1
    endpoint.updated_at = now
    endpoint.updated_by = ctx.actor
    repository.save(session, endpoint)


def _shown(endpoint: Endpoint, status: EndpointStatus | None) -> EndpointState:
    return shown_state(
        paused=endpoint.paused,
        scaled_to_zero=endpoint.scaled_to_zero,
        generation=endpoint.generation,
        min_replica=endpoint.spec["compute"]["scaling"]["minReplica"],
        observed=observed_of(status),
    ).state


def _check_context(spec: EndpointSpec, catalogs: Catalogs, *, current: str | None = None) -> HardwareRow:
    """The hardware row and replica ceiling; ``current`` is the row the endpoint already uses, if any."""
    key = (
        spec.provider.vendor,
        spec.provider.region,
        spec.compute.accelerator.value,
        spec.compute.instance_type,
        spec.compute.instance_size,
    )
    compute = catalogs.hardware.find(key)
    if compute is None:
        options = sorted(
            f"{c.accelerator.value}/{c.instance_type}/{c.instance_size}"
            for c in catalogs.hardware.near(spec.provider.vendor, spec.provider.region)
        )
        where = f"{spec.provider.vendor}/{spec.provider.region}"
        places = sorted({f"{c.vendor}/{c.region}" for c in catalogs.hardware.computes})
        hint = (
            f"choose one of: {', '.join(options)}"
            if options
            else f"this catalog has hardware in {', '.join(places) or 'no region'} (GET /v2/provider/{{namespace}})"
        )
        raise BadRequest(
            f"compute: no hardware {key[2]}/{key[3]}/{key[4]} in {where}: {hint}",
            fields=[{"field": "compute", "message": "unknown hardware row"}],
        )
    if compute.status in ("deprecated", "not_available") and compute.id != current:
        raise BadRequest(
            f"compute: {compute.id} is {compute.status}: choose another instance (GET /v2/provider/{{ns}})",
            fields=[{"field": "compute.instanceType", "message": compute.status}],
        )
    ceiling = catalogs.max_replica_ceiling
    if spec.compute.scaling.max_replica > ceiling:
        raise BadRequest(
            f"compute.scaling.maxReplica: {spec.compute.scaling.max_replica} is above this installation's "
            f"ceiling of {ceiling}: lower it",
            fields=[{"field": "compute.scaling.maxReplica", "message": f"at most {ceiling}"}],
        )
    return compute


def _check_engine(spec: EndpointSpec, compute: HardwareRow, catalogs: Catalogs, resolution: Resolution) -> None:
    """The engine that will really run (after the Hub had its say) must exist for the hardware."""
    config = spec.model.image[spec.model.variant.value].model_dump(by_alias=True, exclude_none=True)
    if resolution.model_path:
        config["modelPath"] = resolution.model_path
    engine = ImageVariant(resolution.engine) if resolution.engine else spec.model.variant
    if not catalogs.containers and (spec.model.variant is ImageVariant.CUSTOM or config.get("url")):
        why = (
            "a container image cannot run here: this Dais runs replicas as processes on its own machine (the "
            "local runtime) with no container runtime; choose an engine from the catalog without a url, or run "
            "Dais on Kubernetes"
        )
        raise BadRequest(f"model.image: {why}", fields=[{"field": "model.image", "message": "no container runtime"}])
    try:
        catalogs.engines.resolve(engine, config, task=resolution.task, compute=compute)
    except EngineError as exc:
        raise BadRequest(f"model.image: {exc}", fields=[{"field": "model.image", "message": str(exc)}]) from None


def _resolve(
    session: Session,
    spec: EndpointSpec,
    *,
    compute: HardwareRow,
    namespace: str,
    hub: HubResolver,
    box: SecretBox,
    answers: Answers,
) -> Resolution:
    """The Hub's answer, with the endpoint's own HF_TOKEN secret or else the namespace's Hub token: from
    ``answers``, else ``NeedsHub`` (the Hub is asked once the transaction is rolled back)."""
    token = spec.model.secrets.get("HF_TOKEN")
    if token is None:
        sealed = hub.namespace_token(namespace, lambda: repository.hub_token_of(session, namespace))
        token = box.open(sealed)["token"] if sealed else None
    model = spec.model
    config = model.image[model.variant.value].model_dump(mode="json", by_alias=True, exclude_none=True)
    # Everything hub.resolve reads: the answer is reused only for this very question.
    key = (
        "resolve",
        compute.id,
        model.repository,
        model.revision,
        model.task,
        model.variant.value,
        orjson.dumps(config, option=orjson.OPT_SORT_KEYS),
        hashlib.sha256(token.encode()).hexdigest() if token else None,
    )
    return answers.get(key, lambda: _ask_hub(hub, spec, compute=compute, token=token))


def _ask_hub(hub: HubResolver, spec: EndpointSpec, *, compute: HardwareRow, token: str | None) -> Resolution:
    """Network I/O, with retries: never called inside a transaction."""
    try:
        return hub.resolve(spec, compute=compute, token=token)
    except Refused as exc:
        raise BadRequest(f"{exc.field}: {exc.message}", fields=[{"field": exc.field, "message": exc.message}]) from None
    except HubUnavailable as exc:
        raise ServiceUnavailable(str(exc)) from None


def _resolution_of(endpoint: Endpoint) -> Resolution | None:
    stored = endpoint.resolution
    if not stored:
        return None
    return Resolution(
        sha=stored.get("sha"),
        task=stored.get("task"),
        engine=stored.get("engine"),
        model_path=stored.get("modelPath"),
        weight_bytes=stored.get("weightBytes"),
        verified=bool(stored.get("verified")),
    )


# What the Hub's answer depends on: a change to any of these asks it again.
_RESOLVED_FROM = (("model", "repository"), ("model", "revision"), ("model", "task"), ("model", "image"), ("provider",))
_RESOLVED_FROM_COMPUTE = ("accelerator", "instanceType", "instanceSize")


def _model_changed(stored: dict[str, Any], merged: dict[str, Any], patch: dict[str, Any]) -> bool:
    for path in _RESOLVED_FROM:
        if _dig(stored, path) != _dig(merged, path):
            return True
    compute_patch = patch.get("compute") or {}
    return any(
        key in compute_patch and compute_patch[key] != stored["compute"].get(key) for key in _RESOLVED_FROM_COMPUTE
    )


def _token_changed(*, material_of: EndpointSpec, old: dict[str, Any]) -> bool:
    before: str | None = old.get("secrets", {}).get("HF_TOKEN")
    return material_of.model.secrets.get("HF_TOKEN") != before


def _dig(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None  # type: ignore[assignment]
    return data


def _stored(spec: EndpointSpec, compute: HardwareRow, resolution: Resolution) -> dict[str, Any]:
    stored = spec.to_stored()
    stored["compute"] = {"id": compute.id, **stored["compute"]}
    if stored["model"].get("task") is None and resolution.task:
        stored["model"]["task"] = resolution.task  # the Hub's pipeline tag, when the spec named no task
    return stored


def _accelerators(compute: HardwareRow, spec: EndpointSpec) -> int:
    return compute.num_accelerators * spec.compute.scaling.max_replica


def _audit_within_quota(
    session: Session, *, namespace: str, compute: HardwareRow, spec: EndpointSpec, **event: Any
) -> None:
    """Records the audit event and checks the namespace's quota with this write included, as the last step
    before commit.

    The namespace's account row lock serializes quota checks; taking it last keeps it held only for the
    usage sum and the commit, not for the whole request (a long hold showed in UPDATE's p99). The sum rides
    on the audit INSERT, which starts after the lock is held: its snapshot has every committed change, and
    the request saves a round trip.
    """
    _lock_namespace(session, namespace)
    total = audit.record(
        session,
        namespace=namespace,
        returning=repository.ACCELERATORS_IN_USE,
        returning_params=repository.usage_params(namespace, compute.quota_key),
        **event,
    )
    _check_quota(int(total), namespace=namespace, compute=compute, spec=spec)


def _lock_namespace(session: Session, namespace: str) -> None:
    if repository.lock_namespace(session, namespace) is None:
        raise NotFound(f"namespace {namespace!r} does not exist: create the user or org first")


def _check_quota(total: int, *, namespace: str, compute: HardwareRow, spec: EndpointSpec) -> None:
    """``total``: the namespace's use of this accelerator type with this write included."""
    wanted = _accelerators(compute, spec)
    if total > compute.max_accelerators:
        raise BadRequest(
            f"quota: {namespace} would use {total} of {compute.max_accelerators} allowed "
            f"{compute.instance_type} accelerators ({total - wanted} in use, this endpoint needs {wanted} "
            f"at maxReplica {spec.compute.scaling.max_replica}): lower maxReplica, pause or delete another endpoint, "
            "or ask an admin for more quota",
            fields=[{"field": "compute.scaling.maxReplica", "message": "quota exceeded"}],
        )


def _sealed(box: SecretBox, material: dict[str, Any]) -> bytes | None:
    """Encrypted secret material; None when there is none (most endpoints): readers take None as empty."""
    if not material.get("secrets") and len(material) == 1:
        return None
    return box.seal(material)


def _material(endpoint: Endpoint, box: SecretBox) -> dict[str, Any]:
    return box.open(endpoint.secrets) if endpoint.secrets else {"secrets": {}}


def _with_material(spec: dict[str, Any], material: dict[str, Any]) -> dict[str, Any]:
    model = {**spec["model"], "secrets": dict(material.get("secrets", {}))}
    password = material.get("registryPassword")
    if password is not None:
        ((variant, config),) = model["image"].items()
        creds = {**config.get("credentials", {}), "password": password}
        model["image"] = {variant: {**config, "credentials": creds}}
    return {**spec, "model": model}


def _keep_redacted(patch: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """A round-tripped ``**redacted**`` value means "keep the stored secret", never the literal text."""
    model = patch.get("model")
    if not isinstance(model, dict):
        return patch
    model = dict(model)
    secrets = model.get("secrets")
    if isinstance(secrets, dict):
        old = current["model"].get("secrets", {})
        model["secrets"] = {k: (old.get(k, v) if v == REDACTED else v) for k, v in secrets.items()}
    image = model.get("image")
    if isinstance(image, dict) and len(image) == 1:
        ((variant, config),) = image.items()
        creds = config.get("credentials") if isinstance(config, dict) else None
        if isinstance(creds, dict) and creds.get("password") == REDACTED:
            old_config = current["model"]["image"].get(variant, {})
            old_password = old_config.get("credentials", {}).get("password")
            model["image"] = {variant: {**config, "credentials": {**creds, "password": old_password}}}
    return {**patch, "model": model}
