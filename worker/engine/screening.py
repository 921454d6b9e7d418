"""Screening a job's images with the safety checker and replacing the flagged ones (`safety_checker_type`
of the Stable Diffusion API enterprise)."""

from __future__ import annotations

from PIL import Image

from worker.engine.pipelines import PipelineCache
from worker.engine.types import NamedSource


def screen_images(
    cache: PipelineCache, checker: NamedSource, images: list[Image.Image], replacement: str
) -> tuple[list[Image.Image], list[bool]]:
    """The images with each flagged one replaced by `replacement`, and the flags, in order."""
    # torch and diffusers, only for a job that asks for the check: an erase-only worker never loads them
    from worker.engine.loading import load_safety_checker
    from worker.engine.safety import replace_image

    model = cache.component(
        "safety", checker.source, lambda: load_safety_checker(checker, cache.device), label=checker.name
    )
    flags = model.flags(images, offset=float(checker.options.get("score_offset", 0.0)))
    return [replace_image(i, replacement) if f else i for i, f in zip(images, flags, strict=True)], flags
