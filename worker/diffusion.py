"""Diffusers pipelines behind the Inpainter interface: loading and running them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from storage.contract import JobParams
from storage.errors import JobFailure
from storage.registry import ModelSpec
from worker.inference import StepCallback
from worker.schedulers import build_scheduler

log = logging.getLogger(__name__)


def resolve_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def dtype_for(device: torch.device) -> torch.dtype:
    """fp16 on CUDA, fp32 on CPU (CPU half precision is slow and lossy)."""
    return torch.float16 if device.type == "cuda" else torch.float32


def describe_source(spec: ModelSpec) -> str:
    """The source as it may be shown to a client: hub ids yes, local paths no."""
    return "its local directory" if Path(spec.source).is_absolute() or spec.source.startswith(".") \
        else repr(spec.source)


def load_pretrained(pipeline_cls: Any, spec: ModelSpec, device: torch.device, **kwargs: Any) -> Any:
    """`pipeline_cls.from_pretrained(spec.source)`, on `device`; a failure becomes a JobFailure."""
    looks_local = Path(spec.source).is_absolute() or spec.source.startswith(".")
    if looks_local and not Path(spec.source).is_dir():
        raise JobFailure("model_unavailable", f"model {spec.slug!r} could not be loaded: its local directory "
                                              "does not exist")
    try:
        pipe = pipeline_cls.from_pretrained(spec.source, dtype=dtype_for(device), **kwargs)
    except (OSError, ValueError) as exc:
        log.error("loading %s from %s failed: %s", spec.slug, spec.source, exc)
        raise JobFailure(
            "model_unavailable",
            f"model {spec.slug!r} could not be loaded from {describe_source(spec)}: its weights were not found "
            "or are incomplete",
        ) from None
    pipe = pipe.to(device)
    if device.type == "cuda":
        pipe.unet.to(memory_format=torch.channels_last)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class DiffusersInpainter:
    """Runs a resident diffusers inpainting pipeline. Not thread-safe: one job at a time."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.scheduler_config = pipe.scheduler.config

    def __call__(
        self, params: JobParams, image: Image.Image, mask: Image.Image, *, on_step: StepCallback
    ) -> list[Image.Image]:
        pipe = self.pipe
        pipe.scheduler = build_scheduler(params.scheduler, self.scheduler_config)
        # CPU generators: the same seed gives the same noise on every device.
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in params.seeds()]

        def step_end(p: Any, index: int, _timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            on_step(index + 1, int(p.num_timesteps))
            return kwargs

        result = pipe(
            prompt=params.prompt,
            negative_prompt=params.negative_prompt,
            image=image,
            mask_image=mask,
            width=params.width,
            height=params.height,
            strength=params.strength,
            num_inference_steps=params.num_inference_steps,
            guidance_scale=params.guidance_scale,
            num_images_per_prompt=params.samples,
            generator=generators,
            callback_on_step_end=step_end,
            output_type="pil",
        )
        return list(result.images)


def quiet_loaders() -> None:
    """No tqdm bars from diffusers and transformers in the worker's log."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def load_sd15(spec: ModelSpec, device: torch.device) -> DiffusersInpainter:
    from diffusers import StableDiffusionInpaintPipeline

    quiet_loaders()
    pipe = load_pretrained(
        StableDiffusionInpaintPipeline, spec, device, safety_checker=None, requires_safety_checker=False
    )
    return DiffusersInpainter(pipe)
