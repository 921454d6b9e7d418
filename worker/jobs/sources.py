"""Where each named thing a job uses comes from: read from the registry once, when the job is claimed.

`resolve_sources` finds the base model's weights, the VAE, LoRAs, embeddings,
ControlNet, depth estimator or annotator networks and safety checker the job names; a name deleted
since submission fails the job with a reason.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from storage.contract.assets import ANNOTATORS, DEFAULT_SAFETY_CHECKER, AssetSpec
from storage.contract.params import JobParams
from storage.contract.processors import ANNOTATOR_MODULES, DEPTH_MODELS
from storage.contract.specs import ModelSpec
from storage.database.assets import find_asset
from storage.errors import JobFailure
from worker.engine.types import AnnotatorSource, JobSources, NamedSource


def named_asset(session: Session, kind: str, name: str, label: str) -> NamedSource:
    """The registered `name` of `kind`; JobFailure model_unavailable naming it (as `label`) when it is not."""
    asset: AssetSpec | None = find_asset(session, kind, name)
    if asset is None:
        raise JobFailure("model_unavailable", f"{label} {name!r} is no longer registered")
    return NamedSource(name=name, source=asset.source, options=dict(asset.options))


def weights_of(session: Session, spec: ModelSpec, base_model: str | None) -> ModelSpec:
    """`spec` with `source` set to the weights it runs on: those of `base_model` when named (SDXL), with
    that checkpoint's `sha256` and `config`."""
    if not base_model:
        return spec
    base = find_asset(session, "base_model", base_model)
    if base is None:
        raise JobFailure("model_unavailable", f"base_model {base_model!r} is no longer registered")
    weights = {"source": base.source, "sha256": base.sha256, "config": base.config}
    return spec.model_copy(update={**weights, "base_model": base_model})


def resolve_sources(session: Session, spec: ModelSpec, params: JobParams) -> JobSources:
    """Look up every name the job uses; a name deleted since submission fails the job."""
    spec = weights_of(session, spec, params.base_model)
    adapters = params.adapters
    control = params.control
    processor = control.processor if control else None
    return JobSources(
        spec=spec,
        vae=named_asset(session, "vae", adapters.vae, "vae") if adapters.vae else None,
        loras=tuple(
            NamedSource(name=u.name, source=named_asset(session, "lora", u.name, "LoRA").source, weight=u.weight)
            for u in adapters.loras
        ),
        embeddings=tuple(named_asset(session, "embeddings", name, "embedding") for name in adapters.embeddings),
        controlnet=named_asset(session, "controlnet", control.model, "cn_model") if control else None,
        depth=named_asset(session, "depth_estimator", DEPTH_MODELS[processor], "depth estimator")
        if processor in DEPTH_MODELS
        else None,
        annotator=AnnotatorSource(
            ANNOTATOR_MODULES[processor], named_asset(session, "annotators", ANNOTATORS, "annotators")
        )
        if processor in ANNOTATOR_MODULES
        else None,
        safety=named_asset(session, "safety_checker", DEFAULT_SAFETY_CHECKER, "safety checker")
        if params.safety
        else None,
    )
