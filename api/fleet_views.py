"""Bodies of the model-management routes, built from the registry and the workers' heartbeats."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from storage.contract.assets import ASSET_KINDS, AssetSpec
from storage.contract.specs import BUILTIN, DIFFUSION_FAMILIES, ModelSpec
from storage.database.assets import find_asset, list_assets
from storage.database.registry import find_model, list_models

PER_JOB_KINDS = ("lora", "embeddings")


def registry_listing(session: Session) -> dict[str, Any]:
    """Every model slug (routable at POST /v2/{slug}) and every named asset, with its source."""
    models = [spec.model_dump(mode="json") | {"builtin": spec.slug in BUILTIN} for spec in list_models(session)]
    assets = [asset.model_dump(mode="json") for asset in list_assets(session)]
    return {"models": models, "assets": assets}


def weights_source(session: Session, spec: ModelSpec) -> str:
    """Where a model's weights come from: its own source, or its default base_model's."""
    if spec.source:
        return spec.source
    asset = find_asset(session, "base_model", spec.base_model or "")
    return asset.source if asset else ""


def find_named(session: Session, name: str, kind: str | None) -> ModelSpec | AssetSpec | None:
    """A model slug or an asset by name; `kind` (a family or an asset kind) narrows it."""
    if kind is None or kind in DIFFUSION_FAMILIES:
        spec = find_model(session, name)
        if spec is not None and (kind is None or spec.family == kind):
            return spec
    for asset_kind in ASSET_KINDS if kind is None else [kind]:
        asset = find_asset(session, asset_kind, name)
        if asset is not None:
            return asset
    return None


def model_status(session: Session, name: str, kind: str | None, workers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """verify_model: registered or not, and which online workers hold its weights in memory."""
    found = find_named(session, name, kind)
    if found is None:
        return None
    model_type: str
    if isinstance(found, ModelSpec):
        model_type, source = found.family, weights_source(session, found)
    else:
        model_type, source = found.kind, found.source
    loaded_on = [w["name"] for w in workers if any(e.get("source") == source for e in w["resident"])]
    status = {
        "model_id": name,
        "model_type": model_type,
        "source": source,
        "registered": True,
        "loaded": bool(loaded_on),
        "loaded_on": loaded_on,
    }
    if model_type in PER_JOB_KINDS:
        status["note"] = "loaded onto the pipeline for each job that names it, and removed after the job"
    return status
