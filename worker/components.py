"""What a job uses besides its pipeline: where each named thing comes from, and loading it.

`resolve_sources` reads the registry once, when the job is claimed: the base
model's weights, the VAE, LoRAs, embeddings, ControlNet, depth estimator and
safety checker the job names. `load_components` loads the models among them
through the resident cache (ControlNets, VAEs and the depth estimator stay
resident like pipelines); LoRAs and embeddings stay files until the inpainter
applies them for the job and removes them after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from storage.assets import DEFAULT_SAFETY_CHECKER, DEPTH_ESTIMATOR, AssetSpec, find_asset
from storage.contract import JobParams
from storage.errors import JobFailure
from storage.registry import ModelSpec
from worker.pipelines import PipelineCache


@dataclass(frozen=True)
class NamedSource:
    """A registered name, where its weights are, and the options it was registered with."""

    name: str
    source: str
    options: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0


@dataclass(frozen=True)
class JobSources:
    spec: ModelSpec  # with `source` set to the weights actually used (the base model's, for SDXL)
    vae: NamedSource | None = None
    loras: tuple[NamedSource, ...] = ()
    embeddings: tuple[NamedSource, ...] = ()
    controlnet: NamedSource | None = None
    depth: NamedSource | None = None
    safety: NamedSource | None = None


@dataclass
class JobComponents:
    """Loaded models for one job (None: not used), and the adapter files to apply."""

    vae: Any = None
    controlnet: Any = None
    depth: Any = None
    loras: tuple[NamedSource, ...] = ()
    embeddings: tuple[NamedSource, ...] = ()


def _named(session: Session, kind: str, name: str, label: str) -> NamedSource:
    asset: AssetSpec | None = find_asset(session, kind, name)
    if asset is None:
        raise JobFailure("model_unavailable", f"{label} {name!r} is no longer registered")
    return NamedSource(name=name, source=asset.source, options=dict(asset.options))


def weights_of(session: Session, spec: ModelSpec, base_model: str | None) -> ModelSpec:
    """`spec` with `source` set to the weights it runs on: those of `base_model` when named (SDXL)."""
    if not base_model:
        return spec
    base = _named(session, "base_model", base_model, "base_model")
    return spec.model_copy(update={"source": base.source, "base_model": base_model})


def resolve_sources(session: Session, spec: ModelSpec, params: JobParams) -> JobSources:
    """Look up every name the job uses; a name deleted since submission fails the job."""
    spec = weights_of(session, spec, params.base_model)
    adapters = params.adapters
    control = params.control
    return JobSources(
        spec=spec,
        vae=_named(session, "vae", adapters.vae, "vae") if adapters.vae else None,
        loras=tuple(
            NamedSource(name=u.name, source=_named(session, "lora", u.name, "LoRA").source, weight=u.weight)
            for u in adapters.loras
        ),
        embeddings=tuple(_named(session, "embeddings", name, "embedding") for name in adapters.embeddings),
        controlnet=_named(session, "controlnet", control.model, "cn_model") if control else None,
        depth=_named(session, "depth_estimator", DEPTH_ESTIMATOR, "depth estimator")
        if control and control.processor == "depth"
        else None,
        safety=_named(session, "safety_checker", DEFAULT_SAFETY_CHECKER, "safety checker")
        if params.safety
        else None,
    )


def load_components(cache: PipelineCache, sources: JobSources) -> JobComponents:
    """Load (or reuse) the job's ControlNet, VAE and depth estimator; raises JobFailure naming what failed.

    A job with none of them (every `erase` job) imports nothing: worker.loading imports torch.
    """
    components = JobComponents(loras=sources.loras, embeddings=sources.embeddings)
    if not (sources.vae or sources.controlnet or sources.depth):
        return components
    from worker.loading import load_controlnet, load_depth_estimator, load_vae

    device = cache.device
    if sources.vae:
        vae = sources.vae
        components.vae = cache.component("vae", vae.source, lambda: load_vae(vae, device), label=vae.name)
    if sources.controlnet:
        net = sources.controlnet
        components.controlnet = cache.component(
            "controlnet", net.source, lambda: load_controlnet(net, device), label=net.name
        )
    if sources.depth:
        depth = sources.depth
        components.depth = cache.component(
            "depth", depth.source, lambda: load_depth_estimator(depth, device), label=depth.name
        )
    return components
