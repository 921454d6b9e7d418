"""Loading what a job uses besides its pipeline (worker.jobs.sources says where each comes from).

`load_components` loads the models among a job's sources through the resident
cache (ControlNets, VAEs, depth estimators and annotator networks stay resident like pipelines);
LoRAs and embeddings stay files until the inpainter applies them for the job and
removes them after it. `screen_images` runs the safety checker, resident too, over a
job's images and replaces the flagged ones (`safety_checker_type` of the Stable
Diffusion API enterprise).
"""

from __future__ import annotations

from PIL import Image

from worker.engine.pipelines import PipelineCache
from worker.engine.types import JobComponents, JobSources, NamedSource


def load_components(cache: PipelineCache, sources: JobSources) -> JobComponents:
    """Load (or reuse) the job's ControlNet, VAE, depth estimator and annotator network; raises
    JobFailure naming what failed.

    A job with none of them (every `erase` job) imports nothing: worker.engine.loading imports torch.
    """
    components = JobComponents(loras=sources.loras, embeddings=sources.embeddings)
    if not (sources.vae or sources.controlnet or sources.depth or sources.annotator):
        return components
    from worker.engine.loading import (  # torch, deferred (above)
        load_annotator,
        load_controlnet,
        load_depth_estimator,
        load_vae,
    )

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
    if sources.annotator:
        annotator = sources.annotator
        components.annotator = cache.component(
            "annotator",
            f"{annotator.files.source}#{annotator.module}",
            lambda: load_annotator(annotator, device),
            label=annotator.module,
        )
    return components


def screen_images(
    cache: PipelineCache, checker: NamedSource, images: list[Image.Image], replacement: str
) -> tuple[list[Image.Image], list[bool]]:
    """The images with each flagged one replaced by `replacement`, and the flags, in order."""
    # torch and diffusers, only for a job that asks for the check: an erase-only worker never loads them
    from worker.engine.safety import replace_image

    flags = flag_images(cache, checker, images)
    return [replace_image(i, replacement) if f else i for i, f in zip(images, flags, strict=True)], flags


def flag_images(cache: PipelineCache, checker: NamedSource, images: list[Image.Image]) -> list[bool]:
    """The safety checker's verdict on each image (True = flagged), with the checker's `score_offset`."""
    from worker.engine.loading import load_safety_checker  # torch and diffusers, deferred (above)

    model = cache.component(
        "safety", checker.source, lambda: load_safety_checker(checker, cache.device), label=checker.name
    )
    flags: list[bool] = model.flags(images, offset=float(checker.options.get("score_offset", 0.0)))
    return flags
