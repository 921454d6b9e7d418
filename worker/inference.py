"""The pure part of a job: `inpaint(inpainter, params, image, mask) -> images`.

It knows nothing of the database, object storage or Celery. Inputs are resized
to the job's size; after inference every output is composited back onto the
input through the mask, so pixels the mask keeps are the input's, bit for bit,
whatever the VAE's round trip did to them.

mask: mode L, 255 = repaint, 0 = keep.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from PIL import Image

from storage.contract import JobParams

StepCallback = Callable[[int, int], None]
"""on_step(step, total): called after each denoising step; may raise to stop the job."""


class Inpainter(Protocol):
    def __call__(
        self, params: JobParams, image: Image.Image, mask: Image.Image, *, on_step: StepCallback
    ) -> list[Image.Image]:
        """`params.samples` images of the input's size; image RGB, mask L (0/255), same size."""
        ...


def fit_inputs(params: JobParams, image: Image.Image, mask: Image.Image) -> tuple[Image.Image, Image.Image]:
    size = (params.width, params.height)
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    if mask.size != size:
        mask = mask.resize(size, Image.Resampling.NEAREST)
    return image, mask


def composite(generated: Image.Image, original: Image.Image, mask: Image.Image) -> Image.Image:
    """Masked pixels from `generated`, every other pixel from `original`."""
    if generated.size != original.size:
        generated = generated.resize(original.size, Image.Resampling.LANCZOS)
    return Image.composite(generated.convert("RGB"), original, mask)


def inpaint(
    inpainter: Inpainter, params: JobParams, image: Image.Image, mask: Image.Image, *, on_step: StepCallback
) -> list[Image.Image]:
    image, mask = fit_inputs(params, image, mask)
    generated = inpainter(params, image, mask, on_step=on_step)
    if len(generated) != params.samples:
        raise RuntimeError(f"the pipeline returned {len(generated)} images, expected {params.samples}")
    return [composite(g, image, mask) for g in generated]
