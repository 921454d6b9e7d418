"""Model management, admin keys only: the Stable Diffusion API enterprise endpoints.

Every route is a POST under /api/v1/enterprise/ with a JSON body. The admin key
goes in the `x-api-key` header or in the body's `key`, as the Stable Diffusion API enterprise sends it.
Registrations live in the database, so every process sees them at once; work
on the workers (warm-up, cache clearing) goes through `worker_commands`, which
each worker acts on between jobs (storage.database.fleet).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.deps import AdminKey, ContextDep, SessionDep
from api.fleet_views import model_status, registry_listing
from api.openapi import error_response, error_responses
from storage.contract.assets import ASSET_KINDS, BUILTIN_ASSETS, AssetSpec
from storage.contract.schedulers import SCHEDULERS, SUPPORTED_NAMES
from storage.contract.sources import SHA256_PATTERN, is_single_file
from storage.contract.specs import BUILTIN, DIFFUSION_FAMILIES, ModelSpec, Range
from storage.database.assets import delete_asset, register_asset
from storage.database.clock import database_now
from storage.database.engine import write_scope
from storage.database.fleet import issue_command, list_workers, queue_depths
from storage.database.jobs import utcnow
from storage.database.registry import delete_model, register_model
from storage.egress.checkpoints import check_weights_source
from storage.errors import InvalidInput, NotFound

router = APIRouter(
    prefix="/api/v1/enterprise",
    tags=["model management (admin)"],
    responses={**error_responses(400, 413), 403: error_response(403, "This route needs an admin key")},
)
KEY_NOTE = (
    "Needs an admin key: in the x-api-key header, as a Bearer token, or in the JSON body's `key` "
    "as the Stable Diffusion API enterprise sends it."
)

ModelType = Literal[
    "sd15",
    "sdxl",
    "sdxl-controlnet",
    "base_model",
    "controlnet",
    "lora",
    "embeddings",
    "depth_estimator",
    "safety_checker",
    "vae",
]
PIPELINE_FIELDS = (
    "sizes",
    "max_side",
    "default_size",
    "steps",
    "guidance_scale",
    "strength",
    "scheduler",
    "base_model",
)


class AdminBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str | None = Field(None, description="The admin API key, when not sent as x-api-key.")


class LoadModelBody(AdminBody):
    model_id: str = Field(min_length=1, max_length=100, description="The name requests will use.")
    url: str = Field(
        min_length=1,
        max_length=2000,
        description="Hugging Face hub id, local directory, or single-file checkpoint: a local .safetensors file or "
        "an http(s) URL, which the workers download (models and base_model assets).",
    )
    sha256: str | None = Field(
        None, pattern=SHA256_PATTERN, description="Single-file checkpoints: their SHA-256, checked before use."
    )
    config: str | None = Field(
        None,
        min_length=1,
        max_length=2000,
        description="Single-file checkpoints: a hub id or local diffusers directory describing them "
        "(model_index.json, component configs, tokenizers); unset: diffusers infers one from the hub.",
    )
    model_type: ModelType = Field(
        "sd15",
        description="A model family (routable at POST /v2/{model_id}) "
        "or an asset kind (a name for base_model, cn_model, lora_model, ...).",
    )
    family: Literal["sd15", "sdxl"] | None = Field(None, description="Assets: which models may use it.")
    options: dict[str, Any] = Field(default_factory=dict, description="Assets: kind-specific options.")
    sizes: list[int] | None = None
    max_side: int | None = Field(None, ge=8, le=4096)
    default_size: int | None = Field(None, ge=8, le=4096)
    steps: Range | None = None
    guidance_scale: Range | None = None
    strength: Range | None = None
    scheduler: str | None = None
    base_model: str | None = None


class ModelIdBody(AdminBody):
    model_id: str = Field(min_length=1, max_length=100)
    model_type: ModelType | None = Field(None, description="Only when several kinds use the name.")


class LoadVaeBody(AdminBody):
    vae_id: str = Field(min_length=1, max_length=100)
    vae_url: str = Field(min_length=1, max_length=2000, description="Hugging Face hub id or a local path.")
    family: Literal["sd15", "sdxl"] | None = None


def writing(context: ContextDep) -> AbstractContextManager[Session]:
    """A session of its own for a change; it may read first (write_scope). Routes that write take
    no SessionDep: a request holds one connection at a time."""
    return write_scope(context.sessions)


def _stale_after(context: ContextDep) -> timedelta:
    return timedelta(seconds=3 * context.settings.worker_heartbeat_seconds)


@router.post("/get_all_models", summary="List every model and named asset, with its source", description=KEY_NOTE)
def get_all_models(key: AdminKey, session: SessionDep, body: AdminBody | None = None) -> dict[str, Any]:
    return {"status": "success", **registry_listing(session)}


def _pipeline_spec(body: LoadModelBody) -> ModelSpec:
    given = {name: getattr(body, name) for name in PIPELINE_FIELDS if getattr(body, name) is not None}
    if "scheduler" in given and given["scheduler"] not in SUPPORTED_NAMES:
        raise InvalidInput(
            "scheduler",
            f"unknown scheduler {given['scheduler']!r}",
            limit=SUPPORTED_NAMES,
            value=given["scheduler"],
        )
    if "scheduler" in given:
        given["default_scheduler"] = given.pop("scheduler")
    if "sizes" in given:
        given["sizes"] = tuple(given["sizes"])
    try:
        return ModelSpec(
            slug=body.model_id, family=body.model_type, source=body.url, sha256=body.sha256, config=body.config, **given
        )
    except ValueError as exc:
        raise InvalidInput("model_id", f"is not a valid model: {exc}", value=body.model_id) from None


def _asset_spec(body: LoadModelBody) -> AssetSpec:
    """The named asset a load_model body describes; pipeline-only fields are a 400."""
    stray = [name for name in PIPELINE_FIELDS if getattr(body, name) is not None]
    if stray:
        raise InvalidInput(
            stray[0],
            f"applies to model families ({', '.join(DIFFUSION_FAMILIES)}), not to a {body.model_type}",
            value=getattr(body, stray[0]),
        )
    fields = {"kind": body.model_type, "name": body.model_id, "source": body.url, "family": body.family}
    fields |= {"sha256": body.sha256, "config": body.config}
    try:
        return AssetSpec(**fields, options=body.options)
    except ValueError as exc:
        raise InvalidInput("model_id", f"is not a valid name: {exc}", value=body.model_id) from None


def check_checkpoint_fields(body: LoadModelBody) -> None:
    """sha256 and config describe a single-file checkpoint of a model or base_model."""
    for name in ("sha256", "config"):
        value = getattr(body, name)
        if value is None:
            continue
        if body.model_type not in (*DIFFUSION_FAMILIES, "base_model"):
            raise InvalidInput(
                name, f"applies to models and base_model assets, not to a {body.model_type}", value=value
            )
        if not is_single_file(body.url):
            raise InvalidInput(
                name, "describes a single-file checkpoint: `url` is neither a .safetensors path nor a URL", value=value
            )


@router.post(
    "/load_model", summary="Register a model or asset; workers warm pipelines up between jobs", description=KEY_NOTE
)
def load_model(body: LoadModelBody, key: AdminKey, context: ContextDep) -> dict[str, Any]:
    check_checkpoint_fields(body)
    check_weights_source(body.url, field="url", kind=body.model_type, settings=context.settings)
    now = utcnow()
    answer = {"status": "success", "model_id": body.model_id, "model_type": body.model_type}
    if body.model_type not in DIFFUSION_FAMILIES:
        asset = _asset_spec(body)
        with writing(context) as session:
            register_asset(session, asset, now=now)
        return answer | {"message": "registered; it is loaded by the first job that uses it"}
    if body.family or body.options:
        raise InvalidInput(
            "options", "family and options apply to assets, not to model families", value=body.model_type
        )
    spec = _pipeline_spec(body)
    with writing(context) as session:
        register_model(session, spec, now=now)
        command = issue_command(session, "load", target=body.model_id, now=now)
    return answer | {"message": "registered; every worker loads it between jobs", "command_id": command}


@router.post("/load_vae", summary="Register a VAE that requests can name in `vae`", description=KEY_NOTE)
def load_vae(body: LoadVaeBody, key: AdminKey, context: ContextDep) -> dict[str, Any]:
    check_weights_source(body.vae_url, field="vae_url", kind="vae", settings=context.settings)
    try:
        asset = AssetSpec(kind="vae", name=body.vae_id, source=body.vae_url, family=body.family)
    except ValueError as exc:
        raise InvalidInput("vae_id", f"is not a valid name: {exc}", value=body.vae_id) from None
    with writing(context) as session:
        register_asset(session, asset, now=utcnow())
    return {"status": "success", "vae_id": body.vae_id, "message": "registered; requests may name it in `vae`"}


@router.post(
    "/verify_model",
    summary="Whether a model is registered and which workers hold it in memory",
    description=KEY_NOTE,
    responses=error_responses(404),
)
def verify_model(body: ModelIdBody, key: AdminKey, session: SessionDep, context: ContextDep) -> dict[str, Any]:
    workers = list_workers(session, now=database_now(session), stale_after=_stale_after(context))
    status = model_status(session, body.model_id, body.model_type, [w for w in workers if w["online"]])
    if status is None:
        raise NotFound(f"model {body.model_id!r} is not registered")
    return {"status": "success", **status}


def _delete_registrations(session: Session, name: str, kind: str | None) -> dict[str, str]:
    """Delete the registrations of `name` (of `kind`, or of every kind); returns {kind: source} deleted."""
    deleted: dict[str, str] = {}
    if kind is None or kind in DIFFUSION_FAMILIES:
        source = delete_model(session, name)
        if source is not None:
            deleted["model"] = source
    for asset_kind in ASSET_KINDS if kind is None else [k for k in [kind] if k in ASSET_KINDS]:
        source = delete_asset(session, asset_kind, name)
        if source is not None:
            deleted[asset_kind] = source
    return deleted


@router.post(
    "/delete_model",
    summary="Remove a registration (a built-in it overrode comes back)",
    description=KEY_NOTE,
    responses=error_responses(404),
)
def delete_model_route(body: ModelIdBody, key: AdminKey, context: ContextDep) -> dict[str, Any]:
    now = utcnow()
    with writing(context) as session:
        deleted = _delete_registrations(session, body.model_id, body.model_type)
        for source in {s for s in deleted.values() if s}:
            issue_command(session, "evict", target=source, now=now)
    if not deleted:
        if body.model_id in BUILTIN or any(n == body.model_id for _k, n in BUILTIN_ASSETS):
            raise InvalidInput(
                "model_id", "is built in and cannot be deleted; load_model re-points it", value=body.model_id
            )
        raise NotFound(f"model {body.model_id!r} is not registered")
    return {
        "status": "success",
        "model_id": body.model_id,
        "deleted": sorted(deleted),
        "message": "deleted; workers drop its weights from memory between jobs",
    }


@router.post("/clear_cache", summary="Drop every resident model from every worker, between jobs", description=KEY_NOTE)
def clear_cache(key: AdminKey, context: ContextDep, body: AdminBody | None = None) -> dict[str, Any]:
    with writing(context) as session:
        command = issue_command(session, "clear_cache", now=utcnow())
    return {
        "status": "success",
        "command_id": command,
        "message": "every worker drops its resident models before its next job, or within a heartbeat",
    }


@router.post("/schedulers_list", summary="The scheduler names requests may use", description=KEY_NOTE)
def schedulers_list(key: AdminKey, body: AdminBody | None = None) -> dict[str, Any]:
    return {
        "status": "success",
        "schedulers": SUPPORTED_NAMES,
        "unsupported": {s.name: s.unsupported_reason for s in SCHEDULERS.values() if s.unsupported_reason},
    }


@router.post(
    "/system_details", summary="Workers, devices, free memory, resident models and queue depth", description=KEY_NOTE
)
def system_details(
    key: AdminKey, session: SessionDep, context: ContextDep, body: AdminBody | None = None
) -> dict[str, Any]:
    workers = list_workers(session, now=database_now(session), stale_after=_stale_after(context))
    return {
        "status": "success",
        "workers": workers,
        "queues": queue_depths(session),
        "asset_kinds": list(ASSET_KINDS),
    }


# modelslab-py in enterprise mode sends its management calls under the base of the API it is called
# through: image_editing/ or images/ (its community API).
for base, name, route in (
    (base, name, route)
    for base in ("image_editing", "images")
    for name, route in (("system_details", system_details), ("clear_cache", clear_cache))
):
    router.add_api_route(
        f"/{base}/{name}",
        route,
        methods=["POST"],
        summary=f"The same as /api/v1/enterprise/{name} (the path modelslab-py uses)",
        description=KEY_NOTE,
    )
