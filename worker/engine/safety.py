"""The NSFW safety checker (`safety_checker: yes`) and what replaces a flagged image.

The checker is diffusers' `StableDiffusionSafetyChecker` (CompVis/stable-diffusion-
safety-checker by default; any registered `safety_checker` named "default"). An
image is flagged when, for any concept, cos(image, concept) - concept_threshold +
offset > 0, where a hit on a "special care" concept first adds 0.01 (diffusers'
own rule). `offset` is the registered checker's `score_offset` option (default 0):
positive values flag more images, negative values fewer; tests force a flag with 2.

Replacements (`safety_checker_type`, as the Stable Diffusion API enterprise names
them): `black`; `blur` (Gaussian, radius a tenth of the shorter side); `pixelate`
(blocks of a sixteenth of the shorter side); `sensitive_content_text` (default): a
dark grey image reading "Sensitive content".
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.pipelines.stable_diffusion.safety_checker import cosine_distance
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SPECIAL_CARE_ADJUSTMENT = 0.01
BACKGROUND = (32, 32, 32)
NOTICE = "Sensitive content"


class SafetyChecker:
    """A loaded StableDiffusionSafetyChecker with its CLIP image processor. Not thread-safe."""

    def __init__(self, model: Any, processor: Any) -> None:
        self.model = model
        self.processor = processor

    def flags(self, images: list[Image.Image], *, offset: float = 0.0) -> list[bool]:
        """Per image: True when it is flagged as NSFW."""
        model = self.model
        param = next(model.parameters())
        pixels = self.processor([i.convert("RGB") for i in images], return_tensors="pt").pixel_values
        with torch.no_grad():
            embeds = model.visual_projection(model.vision_model(pixels.to(param.device, param.dtype))[1])
            special = cosine_distance(embeds, model.special_care_embeds) - model.special_care_embeds_weights + offset
            adjustment = (special > 0).any(dim=1, keepdim=True).to(embeds.dtype) * SPECIAL_CARE_ADJUSTMENT
            concept = cosine_distance(embeds, model.concept_embeds) - model.concept_embeds_weights + offset
            flagged = (concept + adjustment > 0).any(dim=1)
        return [bool(f) for f in flagged.cpu()]


def replace_image(image: Image.Image, kind: str) -> Image.Image:
    """What a flagged image becomes, by `safety_checker_type`."""
    w, h = image.size
    side = min(w, h)
    if kind == "black":
        return Image.new("RGB", image.size, (0, 0, 0))
    if kind == "blur":
        return image.convert("RGB").filter(ImageFilter.GaussianBlur(radius=max(2, side // 10)))
    if kind == "pixelate":
        block = max(2, side // 16)
        small = image.convert("RGB").resize((max(1, w // block), max(1, h // block)), Image.Resampling.BOX)
        return small.resize(image.size, Image.Resampling.NEAREST)
    if kind == "sensitive_content_text":
        return notice_image(image.size)
    raise ValueError(f"unknown safety_checker_type {kind!r}")


def notice_image(size: tuple[int, int]) -> Image.Image:
    image = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(8, min(size) // 12))
    left, top, right, bottom = draw.textbbox((0, 0), NOTICE, font=font)
    position = ((size[0] - (right - left)) / 2 - left, (size[1] - (bottom - top)) / 2 - top)
    draw.text(position, NOTICE, fill=(235, 235, 235), font=font)
    return image
