"""Diffusers pipelines behind the Inpainter interface: loading and running them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import diffusers
import torch
import transformers
from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel
from diffusers.loaders.single_file_utils import SingleFileComponentError
from PIL import Image
from safetensors import SafetensorError, safe_open

from storage.contract.params import JobParams
from storage.contract.sources import SAFETENSORS_SUFFIX, is_single_file, is_url
from storage.contract.specs import ModelSpec
from storage.errors import JobFailure
from worker.engine.adapters import applied_adapters
from worker.engine.checkpoints import describe_model, hub_unreachable, offline_config_message, offline_message
from worker.engine.compiling import CompileOptions, compile_unet
from worker.engine.schedulers import build_scheduler, scheduler_overrides
from worker.engine.types import JobComponents, StepCallback

log = logging.getLogger(__name__)

TILING_PIXELS = 1536 * 1536
"""A picture larger than this goes through the VAE in tiles: at full size its activations take
several GB. (The VAE tiles only pictures above its own sample size: 512 px for SD 1.5, 1024 for SDXL.)"""
SLICING_PIXELS = 4 * 1024 * 1024
"""A call that makes more pixels than this (images x width x height) decodes its images one at a time."""
UNET_INPUT_KEY = "model.diffusion_model.input_blocks.0.0.weight"
"""The UNet's first convolution in a single-file checkpoint: its second dimension is the input channels."""


def resolve_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def dtype_for(device: torch.device) -> torch.dtype:
    """fp16 on CUDA, fp32 on CPU (CPU half precision is slow and lossy)."""
    return torch.float16 if device.type == "cuda" else torch.float32


def is_local(source: str) -> bool:
    return Path(source).is_absolute() or source.startswith(".")


def describe_source(source: str) -> str:
    """The source as it may be shown to a client: hub ids yes, local paths and URLs (tokens) no."""
    if is_url(source):
        return "its URL"
    if is_local(source):
        return "its local checkpoint" if is_single_file(source) else "its local directory"
    return repr(source)


def from_pretrained(cls: Any, source: str, what: str, **kwargs: Any) -> Any:
    """`cls.from_pretrained(source, **kwargs)`; a failure becomes a JobFailure naming `what` (and saying what
    to do when the weights are neither cached nor reachable on the hub)."""
    if is_local(source) and not Path(source).exists():
        raise JobFailure("model_unavailable", f"{what} could not be loaded: its local path does not exist")
    try:
        return cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        log.error("loading %s from %s failed: %s", what, source, exc)
        if not is_local(source) and hub_unreachable(exc):
            raise JobFailure("model_unavailable", offline_message(what, source)) from None
        raise JobFailure(
            "model_unavailable",
            f"{what} could not be loaded from {describe_source(source)}: its weights were not found or are incomplete",
        ) from None


def load_pretrained(
    pipeline_cls: Any,
    spec: ModelSpec,
    device: torch.device,
    *,
    compile_options: CompileOptions | None = None,
    **kwargs: Any,
) -> Any:
    """`pipeline_cls.from_pretrained(spec.source)`, or `from_single_file` for a single-file checkpoint, on
    `device`, its UNet compiled in buckets when `compile_options` says so; a failure becomes a JobFailure."""
    what = describe_model(spec)
    if is_single_file(spec.source):
        pipe = from_single_file(pipeline_cls, spec, what, dtype=dtype_for(device), **kwargs)
    else:
        pipe = from_pretrained(pipeline_cls, spec.source, what, dtype=dtype_for(device), **kwargs)
    pipe = pipe.to(device)
    if device.type == "cuda":
        pipe.unet.to(memory_format=torch.channels_last)
    pipe.set_progress_bar_config(disable=True)
    if compile_options is not None:
        compile_unet(pipe, compile_options, max_samples=spec.max_samples)
    return pipe


SINGLE_FILE_ERRORS = (OSError, ValueError, KeyError, RuntimeError, SingleFileComponentError, SafetensorError)


def from_single_file(pipeline_cls: Any, spec: ModelSpec, what: str, **kwargs: Any) -> Any:
    """`pipeline_cls.from_single_file(spec.source)` (a local checkpoint: worker.engine.checkpoints has
    downloaded a URL), described by `spec.config` when given (else diffusers infers a config, from the
    hub); a failure becomes a JobFailure naming `what`."""
    options: dict[str, Any] = {"config": spec.config} if spec.config else {}
    try:
        unet = unet_of_checkpoint(spec, kwargs["dtype"])
        return pipeline_cls.from_single_file(spec.source, **options, **({"unet": unet} if unet else {}), **kwargs)
    except SINGLE_FILE_ERRORS as exc:
        log.error("loading %s from the checkpoint %s failed: %s", what, spec.source, exc)
        if hub_unreachable(exc):
            raise JobFailure("model_unavailable", offline_config_message(what, spec.config)) from None
        raise JobFailure(
            "model_unavailable",
            f"{what} could not be loaded from its checkpoint: it is not a Stable Diffusion checkpoint "
            "diffusers can read, or its config does not describe it",
        ) from None


def unet_of_checkpoint(spec: ModelSpec, dtype: torch.dtype) -> Any:
    """The UNet, when the checkpoint's input channels differ from its config's: a 9-channel inpainting
    checkpoint described by a plain model's config, or a plain 4-channel one by an inpainting config
    (the pipelines run both). None when they agree, or cannot be read cheaply (no config, a pickle):
    diffusers' own inference picks an inpainting config for a 9-channel UNet."""
    if not spec.config or not spec.source.endswith(SAFETENSORS_SUFFIX):
        return None
    with safe_open(spec.source, framework="pt") as checkpoint:
        if UNET_INPUT_KEY not in checkpoint.keys():
            return None
        channels = checkpoint.get_slice(UNET_INPUT_KEY).get_shape()[1]
    if channels == UNet2DConditionModel.load_config(spec.config, subfolder="unet")["in_channels"]:
        return None
    return UNet2DConditionModel.from_single_file(
        spec.source, config=spec.config, subfolder="unet", in_channels=channels, dtype=dtype
    )


class DiffusersInpainter:
    """Runs a resident diffusers inpainting pipeline. Not thread-safe: one job at a time.

    Per job: a fresh scheduler from the pipeline's own config, the job's adapters
    (worker.engine.adapters, removed after the call), clip_skip, and CPU generators
    seeded seed, seed+1, ... so the same seed gives the same noise on every device.
    Subclasses choose the pipeline to call (`pipeline_for`) and add arguments.
    """

    clip_skip_offset = 0  # SDXL already reads the penultimate layer: one layer fewer to skip

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.scheduler_config = pipe.scheduler.config

    def pipeline_for(self, params: JobParams, components: JobComponents) -> Any:
        return self.pipe

    def extra_arguments(self, params: JobParams, image: Image.Image, components: JobComponents) -> dict[str, Any]:
        return {}

    def diffusers_clip_skip(self, params: JobParams) -> int | None:
        """A1111's clip_skip n (1 = no skip) as diffusers' (layers skipped), checked against the encoder."""
        wanted = params.adapters.clip_skip
        if wanted is None or wanted == 1:
            return None
        layers = int(self.pipe.text_encoder.config.num_hidden_layers) - self.clip_skip_offset
        if wanted - 1 >= layers:
            raise JobFailure(
                "invalid_input",
                f"clip_skip {wanted} is too large for this model: its text encoder allows at most {layers}",
            )
        return wanted - 1

    def __call__(
        self,
        params: JobParams,
        image: Image.Image,
        mask: Image.Image,
        *,
        on_step: StepCallback,
        components: JobComponents | None = None,
    ) -> list[Image.Image]:
        components = components or JobComponents()
        return self.call_pipeline(
            params,
            components,
            on_step,
            prompt=params.prompt,
            negative_prompt=params.negative_prompt,
            image=image,
            mask_image=mask,
            num_images_per_prompt=params.samples,
            generator=[torch.Generator("cpu").manual_seed(seed) for seed in params.seeds()],
            **self.extra_arguments(params, image, components),
        )

    def run_batch(
        self,
        jobs: list[JobParams],
        images: list[Image.Image],
        masks: list[Image.Image],
        *,
        on_step: StepCallback,
        components: JobComponents | None = None,
    ) -> list[Image.Image]:
        """One image for each of several jobs that share everything but prompts, seeds and inputs
        (storage.contract.batching). Each job's generator is seeded as it would be alone, so each gets the
        image it would have got alone, within floating-point tolerance."""
        shared = jobs[0]
        return self.call_pipeline(
            shared,
            components or JobComponents(),
            on_step,
            prompt=[job.prompt for job in jobs],
            negative_prompt=None if shared.negative_prompt is None else [job.negative_prompt or "" for job in jobs],
            image=images,
            mask_image=masks,
            num_images_per_prompt=1,
            generator=[torch.Generator("cpu").manual_seed(job.seed) for job in jobs],
        )

    def call_pipeline(
        self, params: JobParams, components: JobComponents, on_step: StepCallback, **inputs: Any
    ) -> list[Image.Image]:
        """The pipeline call with the settings `params` gives (scheduler, size, steps, guidance,
        adapters, clip_skip) and the per-job `inputs`."""
        pipe = self.pipeline_for(params, components)
        overrides = scheduler_overrides(params)
        pipe.scheduler = build_scheduler(params.scheduler, self.scheduler_config, **overrides)

        def step_end(p: Any, index: int, _timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            on_step(index + 1, int(p.num_timesteps))
            return kwargs

        images = len(inputs["generator"])  # one generator per image made
        with applied_adapters(pipe, components), vae_savers(pipe.vae, images, params.width, params.height):
            result = pipe(
                width=params.width,
                height=params.height,
                strength=params.strength,
                num_inference_steps=params.num_inference_steps,
                guidance_scale=params.guidance_scale,
                clip_skip=self.diffusers_clip_skip(params),
                callback_on_step_end=step_end,
                output_type="pil",
                **inputs,
            )
        return list(result.images)


@contextmanager
def vae_savers(vae: Any, images: int, width: int, height: int) -> Iterator[None]:
    """VAE tiling and slicing for one call, only when its size needs them (TILING_PIXELS,
    SLICING_PIXELS): both cost time, and tiling can leave seams."""
    tiling, slicing = width * height > TILING_PIXELS, images * width * height > SLICING_PIXELS
    if tiling:
        vae.enable_tiling()
    if slicing:
        vae.enable_slicing()
    try:
        yield
    finally:
        if tiling:
            vae.disable_tiling()
        if slicing:
            vae.disable_slicing()


def quiet_loaders() -> None:
    """No tqdm bars from diffusers and transformers in the worker's log."""
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def alias_text_model(encoder: Any) -> None:
    """Let diffusers' SD 1.5 clip_skip path find `text_encoder.text_model.final_layer_norm`.

    transformers 5 flattened CLIPTextModel (its layers are no longer under `.text_model`);
    diffusers 0.42 still reads that attribute. The alias is a plain attribute, not a
    registered submodule, so parameters, `to()` and saving are unaffected.
    """
    if (
        "text_model" not in encoder.__dict__
        and not hasattr(encoder, "text_model")
        and hasattr(encoder, "final_layer_norm")
    ):
        object.__setattr__(encoder, "text_model", encoder)


def load_sd15(
    spec: ModelSpec, device: torch.device, compile_options: CompileOptions | None = None
) -> DiffusersInpainter:
    quiet_loaders()
    pipe = load_pretrained(
        StableDiffusionInpaintPipeline,
        spec,
        device,
        compile_options=compile_options,
        safety_checker=None,
        requires_safety_checker=False,
    )
    alias_text_model(pipe.text_encoder)
    return DiffusersInpainter(pipe)
