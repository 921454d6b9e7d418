"""The pure part of a job: `inpaint(inpainter, params, image, mask) -> images`.

It knows nothing of the database, object storage or Celery. mask: mode L,
255 = repaint, 0 = keep (`invert_mask` swaps them first).

- Normally the inputs are resized to the job's size, and after inference every
  output is composited back onto the input through the mask, so pixels the mask
  keeps are the input's, bit for bit, whatever the VAE's round trip did to them.
- `mask_blur` r feathers that composite: the mask is blurred with a (2r+1)-pixel
  Gaussian kernel, so pixels more than r pixels from the mask are still the
  input's, bit for bit, and the band within r pixels blends the two.
- `inpaint_only_masked` (A1111's "only masked"): the mask's bounding box, grown by
  `mask_padding` and then to the job's aspect ratio, is cut from the full-size
  input, scaled to the job's size, inpainted, scaled back and pasted through the
  mask. The output then has the input's size, not the job's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

from storage.contract.params import JobParams
from worker.engine.types import Inpainter, JobComponents, StepCallback

Box = tuple[int, int, int, int]


def fit_inputs(params: JobParams, image: Image.Image, mask: Image.Image) -> tuple[Image.Image, Image.Image]:
    size = (params.width, params.height)
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    if mask.size != size:
        mask = mask.resize(size, Image.Resampling.NEAREST)
    return image, mask


def feather(mask: Image.Image, blur: int) -> Image.Image:
    """The compositing alpha: the mask itself, or blurred over `blur` pixels each side of its edge."""
    if blur <= 0:
        return mask
    size = 2 * blur + 1
    blurred = cv2.GaussianBlur(np.asarray(mask), (size, size), 0, borderType=cv2.BORDER_REPLICATE)
    return Image.fromarray(blurred)


def composite(generated: Image.Image, original: Image.Image, mask: Image.Image, *, blur: int = 0) -> Image.Image:
    """Masked pixels from `generated`, every other pixel from `original` (blended within `blur` px)."""
    if generated.size != original.size:
        generated = generated.resize(original.size, Image.Resampling.LANCZOS)
    return Image.composite(generated.convert("RGB"), original, feather(mask, blur))


def crop_box(mask: Image.Image, padding: int, target: tuple[int, int]) -> Box:
    """The mask's bounding box grown by `padding`, then to `target`'s aspect ratio, inside the image."""
    width, height = mask.size
    bbox = mask.getbbox() or (0, 0, width, height)
    x1, y1 = max(bbox[0] - padding, 0), max(bbox[1] - padding, 0)
    x2, y2 = min(bbox[2] + padding, width), min(bbox[3] + padding, height)
    ratio = target[0] / target[1]
    if (x2 - x1) / (y2 - y1) < ratio:
        x1, x2 = _grow(x1, x2, round((y2 - y1) * ratio), width)
    else:
        y1, y2 = _grow(y1, y2, round((x2 - x1) / ratio), height)
    return x1, y1, x2, y2


def _grow(low: int, high: int, wanted: int, limit: int) -> tuple[int, int]:
    """Widen [low, high) to `wanted` around its centre, shifted (then clipped) to stay in [0, limit)."""
    wanted = min(max(wanted, high - low), limit)
    low = max(0, min(low - (wanted - (high - low)) // 2, limit - wanted))
    return low, low + wanted


@dataclass(frozen=True)
class Prepared:
    """A job's pipeline inputs (at the job's size), and how the images generated from them become
    the job's results."""

    image: Image.Image
    mask: Image.Image
    finish: Callable[[list[Image.Image]], list[Image.Image]]


def prepare(params: JobParams, image: Image.Image, mask: Image.Image) -> Prepared:
    if params.mask.invert:
        mask = ImageOps.invert(mask.convert("L"))
    if params.mask.only_masked:
        return prepare_crop(params, image, mask)
    image, mask = fit_inputs(params, image, mask)
    return Prepared(
        image, mask, lambda generated: [composite(g, image, mask, blur=params.mask.blur) for g in generated]
    )


def prepare_crop(params: JobParams, image: Image.Image, mask: Image.Image) -> Prepared:
    """Inpaint a crop around the mask at the job's size; paste it back into the full-size input."""
    if mask.size != image.size:
        mask = mask.resize(image.size, Image.Resampling.NEAREST)
    box = crop_box(mask, params.mask.padding, (params.width, params.height))
    part, part_mask = fit_inputs(params, image.crop(box), mask.crop(box))
    alpha = feather(mask, params.mask.blur).crop(box)

    def paste(generated: list[Image.Image]) -> list[Image.Image]:
        results = []
        for patch in generated:
            out = image.copy()
            out.paste(patch.convert("RGB").resize(alpha.size, Image.Resampling.LANCZOS), box[:2], alpha)
            results.append(out)
        return results

    return Prepared(part, part_mask, paste)


def inpaint(
    inpainter: Inpainter,
    params: JobParams,
    image: Image.Image,
    mask: Image.Image,
    *,
    on_step: StepCallback,
    components: JobComponents | None = None,
) -> list[Image.Image]:
    prepared = prepare(params, image, mask)
    generated = run_inpainter(inpainter, params, prepared.image, prepared.mask, on_step=on_step, components=components)
    return prepared.finish(generated)


def inpaint_batch(
    inpainter: Any,
    jobs: list[tuple[JobParams, Image.Image, Image.Image]],
    *,
    on_step: StepCallback,
    components: JobComponents | None = None,
) -> list[list[Image.Image]]:
    """Several compatible jobs (storage.contract.batching: one image each) as one pipeline call; each job's
    results, in order. `inpainter` has `run_batch` (worker.engine.diffusion.DiffusersInpainter)."""
    prepared = [prepare(params, image, mask) for params, image, mask in jobs]
    generated = inpainter.run_batch(
        [params for params, _, _ in jobs],
        [p.image for p in prepared],
        [p.mask for p in prepared],
        on_step=on_step,
        components=components,
    )
    if len(generated) != len(jobs):
        raise RuntimeError(f"the pipeline returned {len(generated)} images for a batch of {len(jobs)}")
    return [p.finish([image]) for p, image in zip(prepared, generated, strict=True)]


def run_inpainter(
    inpainter: Inpainter,
    params: JobParams,
    image: Image.Image,
    mask: Image.Image,
    *,
    on_step: StepCallback,
    components: JobComponents | None,
) -> list[Image.Image]:
    generated = inpainter(params, image, mask, on_step=on_step, components=components)
    if len(generated) != params.samples:
        raise RuntimeError(f"the pipeline returned {len(generated)} images, expected {params.samples}")
    return generated
