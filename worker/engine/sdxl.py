"""SDXL inpainting (`sdxl`) and SDXL ControlNet inpainting (`sdxl-controlnet`) on one resident pipeline.

Both families load a `StableDiffusionXLInpaintPipeline` from the base model's
weights; a ControlNet job wraps it with `StableDiffusionXLControlNetInpaintPipeline.
from_pipe`, which shares every module (no copy) and adds the job's ControlNet.
Inpainting (9-channel) and plain (4-channel) SDXL UNets both work.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import StableDiffusionXLControlNetInpaintPipeline, StableDiffusionXLInpaintPipeline
from PIL import Image

from storage.contract.params import JobParams
from storage.contract.specs import ModelSpec
from worker.engine.compiling import CompileOptions
from worker.engine.control import make_control_image
from worker.engine.diffusion import DiffusersInpainter, load_pretrained, quiet_loaders
from worker.engine.types import JobComponents


class SDXLInpainter(DiffusersInpainter):
    clip_skip_offset = 1

    def pipeline_for(self, params: JobParams, components: JobComponents) -> Any:
        if params.control is None:
            return self.pipe
        if components.controlnet is None:
            raise RuntimeError("a ControlNet job needs its ControlNet loaded")
        return StableDiffusionXLControlNetInpaintPipeline.from_pipe(
            self.pipe, controlnet=components.controlnet, add_watermarker=False
        )

    def extra_arguments(self, params: JobParams, image: Image.Image, components: JobComponents) -> dict[str, Any]:
        if params.control is None:
            return {}
        control = make_control_image(
            params.control.processor, image, depth=components.depth, annotator=components.annotator
        )
        return {"control_image": control}


def load_sdxl(spec: ModelSpec, device: torch.device, compile_options: CompileOptions | None = None) -> SDXLInpainter:
    quiet_loaders()
    return SDXLInpainter(
        load_pretrained(
            StableDiffusionXLInpaintPipeline, spec, device, compile_options=compile_options, add_watermarker=False
        )
    )
