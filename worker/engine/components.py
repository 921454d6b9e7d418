"""Loading what a job uses besides its pipeline (worker.jobs.sources says where each comes from).

`load_components` loads the models among a job's sources through the resident
cache (ControlNets, VAEs and the depth estimator stay resident like pipelines);
LoRAs and embeddings stay files until the inpainter applies them for the job and
removes them after it.
"""

from __future__ import annotations

from worker.engine.pipelines import PipelineCache
from worker.engine.types import JobComponents, JobSources


def load_components(cache: PipelineCache, sources: JobSources) -> JobComponents:
    """Load (or reuse) the job's ControlNet, VAE and depth estimator; raises JobFailure naming what failed.

    A job with none of them (every `erase` job) imports nothing: worker.engine.loading imports torch.
    """
    components = JobComponents(loras=sources.loras, embeddings=sources.embeddings)
    if not (sources.vae or sources.controlnet or sources.depth):
        return components
    from worker.engine.loading import load_controlnet, load_depth_estimator, load_vae  # torch, deferred (above)

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
